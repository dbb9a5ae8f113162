# peercdn: one static binary with the tracker and the browser agent.
#
#   docker build -t peercdn .
#   docker run --read-only -p 8080:8080 -p 3478:3478/udp peercdn            # a production node
#   docker run --read-only -p 8080:8080 peercdn serve --demo --vendor-dir /srv/vendor   # the demo
#
# The image runs `serve` with production defaults: no demo, the notary
# fetching only public addresses, the hash-reporter rules on. Configure it
# with PEERCDN_* variables (each flag --x-y is PEERCDN_X_Y; a misspelt one
# stops the node with its name). It writes nothing: run it read-only (an
# ACME certificate cache, --acme-cache, needs a volume).
FROM golang:1.26-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN make vendor build

FROM debian:bookworm-slim
COPY --from=build /src/bin/peercdn /usr/local/bin/peercdn
COPY --from=build /src/web/vendor /srv/vendor
USER 65534:65534
ENV PEERCDN_LISTEN=:8080
EXPOSE 8080 3478/udp
# `peercdn health` reads PEERCDN_LISTEN (and the TLS variables) to find
# the node, so the check follows a changed port; no curl in the image.
HEALTHCHECK --interval=10s --timeout=4s --start-period=5s --retries=3 CMD ["peercdn", "health"]
ENTRYPOINT ["peercdn"]
CMD ["serve"]
