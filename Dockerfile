# The runtime image of switchyard: the release binary, built on the host
# (`cargo build --release --locked`; the image compiles nothing), on a small
# Debian, run as a non-root user, with the SQLite default kept in the /data
# volume. The binary is PID 1: it handles SIGTERM itself (health turns
# NOT_SERVING, in-flight calls finish within shutdown_grace_s, exit 0).
#
#   cargo build --release --locked
#   docker build -t switchyard .
#   docker run --rm -p 50051:50051 -v switchyard-data:/data switchyard
#
# BASE is any Debian-like image with useradd (default debian:bookworm-slim);
# BINARY the binary to copy, relative to the build context.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
ARG BINARY=target/release/switchyard

RUN groupadd --system --gid 10001 switchyard \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin switchyard \
 && mkdir -p /data \
 && chown 10001:10001 /data

COPY ${BINARY} /usr/local/bin/switchyard

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
# Listen on every interface inside the container; the database in the volume.
ENV SWITCHYARD_LISTEN=0.0.0.0:50051 \
    SWITCHYARD_DATABASE_URL=sqlite:///data/switchyard.db
EXPOSE 50051
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["serve"]
