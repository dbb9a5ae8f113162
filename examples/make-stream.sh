#!/usr/bin/env bash
# Makes the sample stream in examples/stream from ffmpeg's test sources:
# 60 s, two renditions (180p at ~150 kbit/s, 360p at ~300 kbit/s), 2 s fMP4
# segments, one VOD playlist per rendition plus a master playlist.
# `peercdn serve --demo` serves it as VOD and as a live sliding window
# (`--demo-stream DIR` serves another one made here).
# Needs ffmpeg (Debian package ffmpeg). Output is deterministic enough to commit.
#
# Settings (environment): OUT (the folder; default examples/stream),
# SECONDS_LONG (60), AUDIO (32k), RENDITIONS (one "name WxH video-rate"
# per line, lowest first). The field harness (bench/field.sh) makes a
# 120 s stream of 426x240 at 400k and 640x360 at 800k with 64k audio.
set -euo pipefail
cd "$(dirname "$0")"
out=${OUT:-stream}
seconds=${SECONDS_LONG:-60}
audio=${AUDIO:-32k}
renditions=${RENDITIONS:-"180p 320x180 150k
360p 640x360 300k"}
rm -rf "$out" && mkdir -p "$out"
# kbit/s of a rate like 300k
kbps() { echo "${1%k}"; }
master="#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS"
while read -r name size rate; do
  [ -n "$name" ] || continue
  mkdir -p "$out/$name"
  encode() {
    ffmpeg -nostdin -hide_banner -loglevel error -y \
      -f lavfi -i "testsrc2=size=$size:rate=25:duration=$seconds" \
      -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=$seconds" \
      "$@" \
      -c:v libx264 -preset veryfast -profile:v main -pix_fmt yuv420p -b:v "$rate" -maxrate "$rate" -bufsize "$rate" \
      -g 50 -keyint_min 50 -sc_threshold 0 -bitexact \
      -c:a aac -b:a "$audio" -ac 1 \
      -f hls -hls_time 2 -hls_playlist_type vod -hls_segment_type fmp4 \
      -hls_fmp4_init_filename init.mp4 -hls_segment_filename "$out/$name/%03d.m4s" \
      "$out/$name/index.m3u8"
  }
  # drawtext needs a font; without one, make the stream without the overlay.
  encode -vf "drawtext=text='peercdn $name %{pts\\:hms}':x=10:y=10:fontsize=14:fontcolor=white:box=1:boxcolor=black@0.5" 2>/dev/null || encode
  bw=$(( ( $(kbps "$rate") + $(kbps "$audio") ) * 1000 * 5 / 4 ))
  master="$master
#EXT-X-STREAM-INF:BANDWIDTH=$bw,RESOLUTION=$size,CODECS=\"avc1.4d401e,mp4a.40.2\"
$name/index.m3u8"
done <<< "$renditions"
echo "$master" > "$out/master.m3u8"
# The hash manifests agents verify peers' bytes against (VOD; the demo
# origin computes the live window's on the fly).
abs=$(cd "$out" && pwd)
(cd .. && go run ./cmd/peercdn hash "$abs")
du -sh "$out"
