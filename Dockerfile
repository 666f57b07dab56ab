# jitgate in a container: the binary only, as a user without privileges.
#   docker build -t jitgate --build-arg JITGATE_COMMIT=$(git rev-parse --short=12 HEAD) .
#   docker run --rm -p 8080:8080 -p 6432:6432 -v jitgate-data:/var/lib/jitgate jitgate
# The default configuration listens on 0.0.0.0 inside the container and keeps its SQLite
# store and keys in the volume; mount your own file at /etc/jitgate/jitgate.toml for more.
FROM rust:1.95-bookworm AS build
ARG JITGATE_COMMIT=unknown
ENV JITGATE_COMMIT=${JITGATE_COMMIT}
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p jitgate && strip target/release/jitgate

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/jitgate --shell /usr/sbin/nologin jitgate \
    && install -d -o jitgate -g jitgate -m 0700 /var/lib/jitgate \
    && install -d -m 0755 /etc/jitgate
COPY --from=build /src/target/release/jitgate /usr/local/bin/jitgate
COPY deploy/container.toml /etc/jitgate/jitgate.toml
USER jitgate
VOLUME ["/var/lib/jitgate"]
EXPOSE 8080 6432
ENTRYPOINT ["/usr/local/bin/jitgate"]
CMD ["serve", "--config", "/etc/jitgate/jitgate.toml"]
