# Debian's haproxy package (2.6 on bookworm), the one tests/deploy runs deploy/haproxy.cfg on.
FROM debian:bookworm-slim
# socat: to talk to the admin socket (docs/deploy.md, "Rolling restart").
RUN apt-get update \
    && apt-get install -y --no-install-recommends haproxy socat \
    && rm -rf /var/lib/apt/lists/*
USER haproxy
EXPOSE 8080
STOPSIGNAL SIGUSR1
CMD ["haproxy", "-W", "-db", "-f", "/etc/haproxy/haproxy.cfg"]
