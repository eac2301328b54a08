# raftkv: one node per container. Build from the repository root:
#
#   docker build -t raftkv:dev .
#
# Every `raftkv serve` flag can be set with its RAFTKV_* variable (RAFTKV_ and
# the flag name in upper case with - as _). The image sets the listeners and
# the data directory; a container still needs RAFTKV_ID, RAFTKV_HTTP_ADVERTISE
# and RAFTKV_RAFT_ADVERTISE (serve refuses to advertise 0.0.0.0), and
# RAFTKV_BOOTSTRAP_EXPECT / RAFTKV_JOIN to form or join a cluster. See
# docs/operations.md and deploy/.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# A static binary: no libc, so it runs on an empty base image.
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/raftkv ./cmd/raftkv \
    && mkdir -p /out/data

# Nothing but the binary: no shell, no package manager, no libc. raftkv
# needs no system CA bundle (members trust the cluster's own CA, --tls-ca).
FROM scratch
COPY --from=build /out/raftkv /usr/local/bin/raftkv
# The data directory belongs to the unprivileged user 65532; a new named
# volume mounted on it starts as a copy of it, owner included.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV RAFTKV_DATA_DIR=/data \
    RAFTKV_HTTP_ADDR=0.0.0.0:8001 \
    RAFTKV_RAFT_ADDR=0.0.0.0:9001
VOLUME ["/data"]
EXPOSE 8001 9001
ENTRYPOINT ["raftkv", "serve"]
