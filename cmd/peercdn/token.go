package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/peercdn/peercdn/tracker"
)

func token(args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	secret := fs.String("secret", os.Getenv("PEERCDN_TOKEN_SECRET"), "the tracker's token secret (env PEERCDN_TOKEN_SECRET)")
	content := fs.String("content", "", "content id the token is for")
	ttl := fs.Duration("ttl", 6*time.Hour, "how long the token is valid")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if len(*secret) < 16 || *content == "" {
		return errors.New("need --secret (16+ bytes) and --content")
	}
	fmt.Println(tracker.Token([]byte(*secret), *content, time.Now().Add(*ttl)))
	return nil
}
