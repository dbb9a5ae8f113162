package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/peercdn/peercdn/hashfile"
)

// hashCmd writes a hash manifest (peercdn-hashes.json) into every folder
// that holds segments under the given folders, or next to the given media
// playlists for the segments they list. Publish the files with the
// segments: agents then verify peers' bytes against them.
func hashCmd(args []string, out io.Writer) error {
	fl := flag.NewFlagSet("hash", flag.ContinueOnError)
	fl.Usage = func() {
		fmt.Fprintf(fl.Output(), "usage: peercdn hash FOLDER|PLAYLIST.m3u8 ...\n\n"+
			"Writes %s with the SHA-256 of every segment in each folder (recursively)\n"+
			"or listed in each local media playlist. Publish it beside the segments.\n", hashfile.Name)
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fl.NArg() == 0 {
		fl.Usage()
		return errors.New("hash: name at least one folder or playlist")
	}
	for _, p := range fl.Args() {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if !st.IsDir() {
			if err := hashPlaylist(p, out); err != nil {
				return err
			}
			continue
		}
		err = filepath.WalkDir(p, func(dir string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return err
			}
			m, err := hashfile.ForFolder(os.DirFS(dir), ".")
			if err != nil {
				return nil // no segments here
			}
			return writeManifest(dir, m, out)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// hashPlaylist hashes the local segments a media playlist lists.
func hashPlaylist(pl string, out io.Writer) error {
	b, err := os.ReadFile(pl)
	if err != nil {
		return err
	}
	dir := filepath.Dir(pl)
	m := &hashfile.Manifest{SHA256: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.Contains(line, "://") || strings.Contains(line, "/") || strings.HasSuffix(line, ".m3u8") {
			return fmt.Errorf("hash: %s lists %q: only segments in the playlist's own folder are supported (hash the folder instead)", pl, line)
		}
		seg, err := os.ReadFile(filepath.Join(dir, line))
		if err != nil {
			return err
		}
		m.SHA256[line] = hashfile.Sum(seg)
	}
	if len(m.SHA256) == 0 {
		return fmt.Errorf("hash: %s lists no segments", pl)
	}
	return writeManifest(dir, m, out)
}

func writeManifest(dir string, m *hashfile.Manifest, out io.Writer) error {
	b, err := m.Encode()
	if err != nil {
		return err
	}
	name := filepath.Join(dir, hashfile.Name)
	if err := os.WriteFile(name, append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s: %d segments\n", name, len(m.SHA256))
	return nil
}
