# A stand-in for python:3.11-slim where no image registry is reachable: deploy/test/run.sh builds
# it on a Debian bookworm root made by debootstrap. Debian's Python 3.11 in a virtual environment
# that comes first on PATH, so `python`, `pip` and the console scripts pip installs behave as in
# the official image. The build context holds the host's CA certificates (for a TLS-intercepting
# proxy, if any) and a pip.conf (empty unless the host names a package index of its own).
ARG DEBIAN_IMAGE=local/debian:bookworm
FROM ${DEBIAN_IMAGE}
ENV PATH=/usr/local/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
COPY ca-certificates/ /usr/local/share/ca-certificates/
COPY pip.conf /etc/pip.conf
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
 && update-ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /usr/local/python \
 && pip install --no-cache-dir --upgrade pip
CMD ["python3"]
