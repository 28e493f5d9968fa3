# dicomsniffd: passive DICOM network monitor.
#
#   docker build -t dicomsniffd .
#   docker run -d --name dicomsniffd --network host --cap-add NET_RAW --cap-add NET_ADMIN \
#     -v /etc/dicomsniffd/dicomsniffd.yaml:/etc/dicomsniffd/dicomsniffd.yaml:ro dicomsniffd
#
# --network host: the container must see the host's mirror-port interface.
# --cap-add NET_RAW: the capture socket (NET_ADMIN is optional: only for kernel buffers
# larger than net.core.rmem_max). The process runs as an unprivileged user; a dedicated
# copy of the interpreter carries the file capability, so nothing else in the image
# (the health check included) can open raw sockets.
#
# Two stages: the wheel (with the compiled hot path, dicomsniffd/_fastpath.c) is built
# where a C compiler is; the image that runs it has none.
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dicomsniffd ./dicomsniffd
# Fails the build if the extension does not compile: the image must not silently run
# the slower pure-Python path.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && pip install --no-cache-dir --no-deps /wheels/dicomsniffd-*.whl \
    && python3 -I -c "import dicomsniffd._fastpath"

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --from=build /wheels /wheels
COPY config/dicomsniffd.yaml /etc/dicomsniffd/dicomsniffd.yaml

# The file capability is written as the security.capability xattr directly
# (VFS_CAP_REVISION_2, effective + permitted CAP_NET_RAW = bit 13): this is what
# `setcap cap_net_raw+ep` does, without installing libcap2-bin into the image.
RUN pip install --no-cache-dir /wheels/dicomsniffd-*.whl \
    && rm -rf /wheels \
    && cp /usr/local/bin/python3.11 /usr/local/bin/dicomsniffd-python \
    && python3 -c "import os, struct; os.setxattr('/usr/local/bin/dicomsniffd-python', 'security.capability', struct.pack('<5I', 0x02000001, 1 << 13, 0, 0, 0))" \
    && groupadd --system --gid 10001 dicomsniffd \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin dicomsniffd \
    && install -d -o 10001 -g 10001 -m 0750 /var/log/dicomsniffd

WORKDIR /
USER 10001:10001
EXPOSE 9104

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9104/healthz', timeout=4)"]

ENTRYPOINT ["/usr/local/bin/dicomsniffd-python", "-m", "dicomsniffd"]
CMD ["run", "--config", "/etc/dicomsniffd/dicomsniffd.yaml"]
