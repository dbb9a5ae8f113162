# peercdn: one static binary with the tracker, the browser agent and the demo.
# docker build -t peercdn . ; docker run -p 8080:8080 peercdn serve --demo --vendor-dir /srv/vendor
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
EXPOSE 8080
ENTRYPOINT ["peercdn"]
CMD ["serve", "--demo", "--vendor-dir", "/srv/vendor"]
