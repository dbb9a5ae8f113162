#!/usr/bin/env bash
# Makes the sample stream in examples/stream from ffmpeg's test sources:
# 60 s, two renditions (180p at ~150 kbit/s, 360p at ~300 kbit/s), 2 s fMP4
# segments, one VOD playlist per rendition plus a master playlist.
# `peercdn serve --demo` serves it as VOD and as a live sliding window.
# Needs ffmpeg (Debian package ffmpeg). Output is deterministic enough to commit.
set -euo pipefail
cd "$(dirname "$0")"
out=stream
rm -rf "$out" && mkdir -p "$out"
seconds=${SECONDS_LONG:-60}
for r in "180p 320x180 150k" "360p 640x360 300k"; do
  set -- $r
  name=$1 size=$2 rate=$3
  mkdir -p "$out/$name"
  ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i "testsrc2=size=$size:rate=25:duration=$seconds" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=$seconds" \
    -vf "drawtext=text='peercdn $name %{pts\\:hms}':x=10:y=10:fontsize=14:fontcolor=white:box=1:boxcolor=black@0.5" \
    -c:v libx264 -preset veryfast -profile:v main -pix_fmt yuv420p -b:v "$rate" -maxrate "$rate" -bufsize "$rate" \
    -g 50 -keyint_min 50 -sc_threshold 0 -bitexact \
    -c:a aac -b:a 32k -ac 1 \
    -f hls -hls_time 2 -hls_playlist_type vod -hls_segment_type fmp4 \
    -hls_fmp4_init_filename init.mp4 -hls_segment_filename "$out/$name/%03d.m4s" \
    "$out/$name/index.m3u8" 2>&1 || {
      # drawtext needs a font; without one, make the stream without the overlay.
      ffmpeg -hide_banner -loglevel error -y \
        -f lavfi -i "testsrc2=size=$size:rate=25:duration=$seconds" \
        -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=$seconds" \
        -c:v libx264 -preset veryfast -profile:v main -pix_fmt yuv420p -b:v "$rate" -maxrate "$rate" -bufsize "$rate" \
        -g 50 -keyint_min 50 -sc_threshold 0 -bitexact \
        -c:a aac -b:a 32k -ac 1 \
        -f hls -hls_time 2 -hls_playlist_type vod -hls_segment_type fmp4 \
        -hls_fmp4_init_filename init.mp4 -hls_segment_filename "$out/$name/%03d.m4s" \
        "$out/$name/index.m3u8"
    }
done
cat > "$out/master.m3u8" <<'M3U'
#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-STREAM-INF:BANDWIDTH=220000,RESOLUTION=320x180,CODECS="avc1.4d400c,mp4a.40.2"
180p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=400000,RESOLUTION=640x360,CODECS="avc1.4d401e,mp4a.40.2"
360p/index.m3u8
M3U
# The hash manifests agents verify peers' bytes against (VOD; the demo
# origin computes the live window's on the fly).
(cd .. && go run ./cmd/peercdn hash "examples/$out")
du -sh "$out"
