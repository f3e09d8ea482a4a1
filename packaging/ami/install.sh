#!/bin/sh
# Runs on the build instance (as root): install the package, the per-instance
# settings hook and a config, enable the service. Shared by the Packer template
# and the EC2 Image Builder component.
set -eu
pkg=${1:-/tmp/tailrace-package}
files=${2:-/tmp}

if command -v dnf >/dev/null 2>&1; then
    cp "$pkg" /tmp/tailrace.rpm
    dnf install -y /tmp/tailrace.rpm
else
    cp "$pkg" /tmp/tailrace.deb
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q /tmp/tailrace.deb
fi

install -D -m 0755 "$files/tailrace-instance-config" /usr/libexec/tailrace/instance-config
install -m 0644 "$files/tailrace-instance-config.service" /etc/systemd/system/tailrace-instance-config.service
install -m 0644 "$files/tailrace.yaml.template" /etc/tailrace/tailrace.yaml.template
# The packaged example config (stream apache-logs, service web) stays in place
# until an instance's tags or user-data say otherwise.
tailrace check --config /etc/tailrace/tailrace.yaml

systemctl daemon-reload
systemctl enable tailrace-instance-config.service tailrace.service
# Nothing from the build instance may leak into the image: no checkpoints.
systemctl stop tailrace.service || true
rm -rf /var/lib/tailrace/* /tmp/tailrace.rpm /tmp/tailrace.deb /tmp/tailrace-package
