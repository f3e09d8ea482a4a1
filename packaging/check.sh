#!/usr/bin/env bash
# Build the tailrace packages (.deb, .rpm; x86_64 and, when the cross toolchain
# is installed, aarch64) and run every packaging check. Exits non-zero on any
# failure and on any warning from systemd-analyze verify, lintian or cfn-lint.
# See packaging/README.md ("Building the packages") for what is checked.
#
#   TAILRACE_PKG_ARCHES   "x86_64 aarch64" (default: aarch64 too when its rustup
#                         target and cargo-zigbuild are installed)
#   TAILRACE_PKG_BINARY   an already-built x86_64 `tailrace` to package instead
#                         of a release build (make test: the binary the tests ran)
#   TAILRACE_PKG_INSTALL  0 skips the dpkg install/upgrade/remove/purge test
#                         (default: run it when root)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export LC_ALL=C.UTF-8

GLIBC_FLOOR=2.34
AARCH64_TRIPLE=aarch64-unknown-linux-gnu
CONFIG=/etc/tailrace/tailrace.yaml

T0=$SECONDS
step() { echo "== packaging: $* [$((SECONDS - T0))s]"; }
fail() { echo "packaging: FAIL: $*" >&2; exit 1; }
# Run a command; any output at all (e.g. systemd-analyze verify's warnings,
# printed with exit status 0) is a failure.
silent() {
  local out
  out=$("$@" 2>&1) || { echo "$out" >&2; fail "$* exited non-zero"; }
  [ -z "$out" ] || { echo "$out" >&2; fail "$* printed warnings"; }
}

for tool in cargo-deb rpmbuild lintian rpm packer cfn-lint checkov systemd-analyze dpkg-deb readelf; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (.ci/run installs it)"
done

META=$(cargo metadata --format-version 1 --no-deps --offline 2>/dev/null)
TARGET_DIR=$(echo "$META" | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
VERSION=$(echo "$META" | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "tailrace-agent"))')
OUT=$TARGET_DIR/packages
STAGE=$OUT/stage
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
rm -rf "$OUT" && mkdir -p "$STAGE"

if [ -z "${TAILRACE_PKG_ARCHES:-}" ]; then
  TAILRACE_PKG_ARCHES=x86_64
  if rustup target list --installed 2>/dev/null | grep -qx "$AARCH64_TRIPLE" &&
    command -v cargo-zigbuild >/dev/null; then
    TAILRACE_PKG_ARCHES="x86_64 aarch64"
  else
    echo "packaging: aarch64 skipped (needs: rustup target add $AARCH64_TRIPLE; pip install cargo-zigbuild)"
  fi
fi
if [ -z "${TAILRACE_PKG_INSTALL:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v dpkg >/dev/null; then TAILRACE_PKG_INSTALL=1; else TAILRACE_PKG_INSTALL=0; fi
fi

# ---------------------------------------------------------------- static checks
step "shell scripts parse"
for f in packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm \
  packaging/rpm/*.sh packaging/ami/install.sh packaging/ami/files/tailrace-instance-config; do
  sh -n "$f" || fail "$f: syntax"
done
if command -v shellcheck >/dev/null; then
  shellcheck -s sh packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm \
    packaging/rpm/*.sh packaging/ami/install.sh packaging/ami/files/tailrace-instance-config
fi

step "systemd-analyze security (offline)"
security() { # unit file -> prints the overall line; fails unless OK or better
  local line
  line=$(systemd-analyze security --offline=true --no-pager "$1" 2>&1 | grep 'Overall exposure level') ||
    fail "systemd-analyze security $1 gave no rating"
  echo "   $(basename "$1"): ${line#*: }"
  echo "$line" | grep -Eq ' (OK|SAFE|PERFECT)( |$)' || fail "$1: exposure worse than OK"
}
cp systemd/tailrace.service "$WORK/tailrace.service"
security "$WORK/tailrace.service"
mkdir -p "$WORK/rpm"
cat systemd/tailrace.service systemd/tailrace-httpd-logs.conf >"$WORK/rpm/tailrace.service"
security "$WORK/rpm/tailrace.service"
grep -q '^TimeoutStopSec=45s$' systemd/tailrace.service || fail "TimeoutStopSec must stay above shutdown_timeout (30s)"
grep -q '^Type=notify$' systemd/tailrace.service || fail "the unit must be Type=notify (the agent sends READY=1)"
grep -q '^WatchdogSec=[1-9]' systemd/tailrace.service || fail "the unit must set WatchdogSec (the agent pings while it makes progress)"
grep -q '^LimitNOFILE=[1-9]' systemd/tailrace.service || fail "the unit must set LimitNOFILE (one descriptor per watched file)"

step "cfn-lint"
cfn-lint packaging/cloudformation/tailrace.yaml || fail "cfn-lint"

# checkov (the common IaC scanner): every finding fixed or skipped in the
# resource's Metadata with its reason. --skip-download: it would fetch
# Bridgecrew's policy updates (and phone home) otherwise.
step "checkov"
checkov --skip-download --quiet --compact --framework cloudformation \
  -f packaging/cloudformation/tailrace.yaml || fail "checkov"

step "template promises (KMS grant for CloudWatch, per-application and operational alarms, IAM, names)"
python3 packaging/cloudformation/check_template.py packaging/cloudformation/tailrace.yaml || fail "check_template.py"

step "Image Builder component parses"
python3 - packaging/ami/imagebuilder-component.yaml <<'EOF' || fail "imagebuilder-component.yaml"
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
assert doc["schemaVersion"] == 1.0 and doc["name"], "schemaVersion/name"
phases = {p["name"]: p for p in doc["phases"]}
assert set(phases) <= {"build", "validate", "test"} and "build" in phases, phases.keys()
for p in phases.values():
    for s in p["steps"]:
        assert s["action"] in {"ExecuteBash", "S3Download"}, s
EOF

# ---------------------------------------------------------------------- build
if [ -n "${TAILRACE_PKG_BINARY:-}" ]; then
  # `make test`: package the binary the tests ran (its one build is shared;
  # compiling the release profile again would add minutes). `make packaging`
  # leaves this unset and packages release builds.
  [ "$TAILRACE_PKG_ARCHES" = x86_64 ] || fail "TAILRACE_PKG_BINARY packages x86_64 only"
  [ -x "$TAILRACE_PKG_BINARY" ] || fail "TAILRACE_PKG_BINARY=$TAILRACE_PKG_BINARY is not an executable"
  step "packaging the prebuilt $TAILRACE_PKG_BINARY (x86_64)"
else
  step "cargo build --release (x86_64)"
  cargo build --release --locked -p tailrace-agent --bin tailrace
fi
if [[ " $TAILRACE_PKG_ARCHES " == *" aarch64 "* ]]; then
  step "cargo zigbuild --release (aarch64, glibc $GLIBC_FLOOR)"
  cargo zigbuild --release --locked -p tailrace-agent --bin tailrace --target "$AARCH64_TRIPLE.$GLIBC_FLOOR"
fi

# Stripped copies, laid out as target dirs so that both packagers find them
# under target/release (x86_64) and target/<triple>/release (aarch64).
strip_to() { # arch src dest (GNU strip knows only the host's format)
  mkdir -p "$(dirname "$3")"
  local s tools=(strip llvm-strip)
  [ "$1" = x86_64 ] || tools=(llvm-strip "$1-linux-gnu-strip")
  for s in "${tools[@]}"; do
    command -v "$s" >/dev/null && "$s" -o "$3" "$2" 2>/dev/null && return 0
  done
  fail "cannot strip $2 (install llvm or binutils-$1-linux-gnu)"
}
for arch in $TAILRACE_PKG_ARCHES; do
  case $arch in
    x86_64) src=${TAILRACE_PKG_BINARY:-$TARGET_DIR/release/tailrace} dst=$STAGE/release/tailrace machine=X86-64 ;;
    aarch64) src=$TARGET_DIR/$AARCH64_TRIPLE/release/tailrace dst=$STAGE/$AARCH64_TRIPLE/release/tailrace machine=AArch64 ;;
    *) fail "unknown architecture $arch" ;;
  esac
  strip_to "$arch" "$src" "$dst"
  step "binary $arch: $(du -h "$dst" | cut -f1), glibc <= $GLIBC_FLOOR"
  readelf -h "$dst" | grep -q "Machine:.*$machine" || fail "$dst is not $machine"
  need=$(readelf -W --dyn-syms -V "$dst" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -Vu | tail -1)
  [ "$(printf '%s\n%s\n' "$need" "$GLIBC_FLOOR" | sort -V | tail -1)" = "$GLIBC_FLOOR" ] ||
    fail "$dst needs glibc $need > $GLIBC_FLOOR"
  echo "   needs glibc $need"
done
"$STAGE/release/tailrace" --version

step "example configs pass tailrace check"
"$STAGE/release/tailrace" check --config packaging/tailrace.yaml
sed -e 's/@STREAM@/apache-logs/' -e 's/@SERVICE@/web/' packaging/ami/files/tailrace.yaml.template >"$WORK/rendered.yaml"
printf 'aws:\n  region: "eu-west-1"\n' >>"$WORK/rendered.yaml"
"$STAGE/release/tailrace" check --config "$WORK/rendered.yaml" >/dev/null

# ------------------------------------------------------------------- package
DEBS=() RPMS=()
for arch in $TAILRACE_PKG_ARCHES; do
  target_flag=()
  [ "$arch" = x86_64 ] || target_flag=(--target "$AARCH64_TRIPLE")
  step "cargo deb ($arch)"
  deb=$(CARGO_TARGET_DIR=$STAGE cargo deb -p tailrace-agent --no-build --no-strip "${target_flag[@]}" \
    --output "$OUT/" 2>"$WORK/deb.err" | tail -1) || { cat "$WORK/deb.err" >&2; fail "cargo deb"; }
  if grep -v '^$' "$WORK/deb.err" | grep -qiv 'strip'; then cat "$WORK/deb.err" >&2; fail "cargo deb warned"; fi
  DEBS+=("$deb")
  step "rpmbuild ($arch)"
  case $arch in
    x86_64) staged=$STAGE/release/tailrace ;;
    *) staged=$STAGE/$AARCH64_TRIPLE/release/tailrace ;;
  esac
  rpmbuild -bb --quiet --target "$arch" \
    --define "_topdir $WORK/rpmbuild" --define "_rpmdir $OUT" \
    --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
    --define "tr_version $VERSION" --define "tr_binary $staged" --define "tr_root $ROOT" \
    packaging/rpm/tailrace.spec >"$WORK/rpm.out" 2>&1 || { cat "$WORK/rpm.out" >&2; fail "rpmbuild"; }
  RPMS+=("$OUT/tailrace-$VERSION-1.$arch.rpm")
  [ -f "${RPMS[-1]}" ] || { cat "$WORK/rpm.out" >&2; fail "rpmbuild made no ${RPMS[-1]}"; }
done
ls -l "$OUT"/*.deb "$OUT"/*.rpm

# --------------------------------------------------------------------- .deb
deb_files() { dpkg-deb -c "$1" | awk '{print $6}' | sed 's|^\./|/|' | grep -v '/$' | sort; }
for deb in "${DEBS[@]}"; do
  step "lintian $(basename "$deb")"
  # Info tags are shown, not fatal; overrides (each explained) are in
  # packaging/debian/lintian-overrides, shipped in the package.
  lintian_rc=0
  lintian --fail-on error,warning --display-info --tag-display-limit 0 "$deb" >"$WORK/lintian.out" 2>&1 || lintian_rc=$?
  grep -v 'running with root privileges' "$WORK/lintian.out" || true
  if [ "$lintian_rc" != 0 ] || grep -qE '^[EW]:' "$WORK/lintian.out"; then fail "lintian reported errors or warnings"; fi
  step "contents of $(basename "$deb")"
  deb_files "$deb" | tee "$WORK/deb.files"
  for f in /usr/bin/tailrace /etc/tailrace/tailrace.yaml /usr/lib/systemd/system/tailrace.service \
    /usr/lib/sysusers.d/tailrace.conf /usr/lib/tmpfiles.d/tailrace.conf /usr/share/man/man1/tailrace.1.gz \
    /usr/share/doc/tailrace/changelog.Debian.gz /usr/share/doc/tailrace/copyright \
    /usr/share/bash-completion/completions/tailrace /usr/share/zsh/vendor-completions/_tailrace \
    /usr/share/fish/vendor_completions.d/tailrace.fish; do
    grep -qx "$f" "$WORK/deb.files" || fail "$deb lacks $f"
  done
  dpkg-deb -f "$deb" Depends
  [ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles)" = "$CONFIG" ] || fail "$deb: conffiles must be exactly $CONFIG"
done

# --------------------------------------------------------------------- .rpm
for rpm in "${RPMS[@]}"; do
  step "rpm -qpl / --configfiles $(basename "$rpm")"
  rpm -qpi "$rpm" | grep -E '^(Name|Version|Release|Architecture|License)'
  rpm -qpl "$rpm" | tee "$WORK/rpm.files"
  for f in /usr/bin/tailrace "$CONFIG" /usr/lib/systemd/system/tailrace.service \
    /usr/lib/systemd/system/tailrace.service.d/10-httpd-logs.conf /usr/lib/sysusers.d/tailrace.conf \
    /usr/lib/tmpfiles.d/tailrace.conf /usr/share/man/man1/tailrace.1 \
    /usr/share/bash-completion/completions/tailrace /usr/share/zsh/site-functions/_tailrace \
    /usr/share/fish/vendor_completions.d/tailrace.fish; do
    grep -qx "$f" "$WORK/rpm.files" || fail "$rpm lacks $f"
  done
  [ "$(rpm -qp --configfiles "$rpm")" = "$CONFIG" ] || fail "$rpm: config files must be exactly $CONFIG"
  rpm -qp --qf '[%{FILENAMES} %{FILEFLAGS:fflags}\n]' "$rpm" | grep -qx "$CONFIG cn" ||
    fail "$rpm: $CONFIG must be %config(noreplace)"
  rpm -qp --scripts "$rpm" | grep -q 'systemd-sysusers' || fail "$rpm: %post does not create the user"
  arch=$(rpm -qp --qf '%{ARCH}' "$rpm")
  case $rpm in *".$arch.rpm") ;; *) fail "$rpm: architecture $arch" ;; esac
  rpm -qpR "$rpm"
done

# --------------------------------------------------------------------- AMI
step "packer validate"
for pkg in "${RPMS[@]}"; do
  a=x86_64; case $pkg in *aarch64*) a=arm64 ;; esac
  (cd packaging/ami && packer validate -var "package=$pkg" -var "arch=$a" tailrace.pkr.hcl)
done
for pkg in "${DEBS[@]}"; do
  a=x86_64; case $pkg in *arm64*) a=arm64 ;; esac
  (cd packaging/ami && packer validate -var "package=$pkg" -var "arch=$a" -var base=ubuntu-24.04 tailrace.pkr.hcl)
done
packer fmt -check packaging/ami/tailrace.pkr.hcl || fail "packer fmt"

# ------------------------------------------------------------ install test
if [ "$TAILRACE_PKG_INSTALL" = 1 ]; then
  deb=${DEBS[0]}
  step "dpkg -i $(basename "$deb")"
  if dpkg -s tailrace >/dev/null 2>&1; then
    echo "packaging: a tailrace package is installed: purging it first"
    dpkg -P tailrace
  fi
  dpkg -i "$deb"
  [ -x /usr/bin/tailrace ] || fail "/usr/bin/tailrace missing"
  /usr/bin/tailrace --version
  /usr/bin/tailrace check --config "$CONFIG"
  id tailrace
  id -nG tailrace | tr ' ' '\n' | grep -qx adm || fail "tailrace is not in adm"
  [ "$(stat -c %U:%G:%a /var/lib/tailrace)" = tailrace:tailrace:750 ] || fail "/var/lib/tailrace: $(stat -c %U:%G:%a /var/lib/tailrace)"
  # The service's user can read the config and write its state directory.
  runuser -u tailrace -- /usr/bin/tailrace check --config "$CONFIG" >/dev/null || fail "tailrace user cannot check the config"
  runuser -u tailrace -- touch /var/lib/tailrace/.w && rm /var/lib/tailrace/.w
  [ -L /etc/systemd/system/multi-user.target.wants/tailrace.service ] || fail "tailrace.service is not enabled"

  step "systemd-analyze verify (installed unit, RPM variant, AMI hook)"
  silent systemd-analyze verify /usr/lib/systemd/system/tailrace.service
  cp "$WORK/rpm/tailrace.service" "$WORK/rpm/tailrace-rpm.service"
  silent systemd-analyze verify "$WORK/rpm/tailrace-rpm.service"
  sed 's|^ExecStart=.*|ExecStart=/usr/bin/tailrace check --config /etc/tailrace/tailrace.yaml|' \
    packaging/ami/files/tailrace-instance-config.service >"$WORK/tailrace-instance-config.service"
  silent systemd-analyze verify "$WORK/tailrace-instance-config.service"

  step "upgrade (dpkg -i over itself) keeps checkpoints and the edited config"
  echo '{"marker": true}' >/var/lib/tailrace/checkpoints.json
  chown tailrace:tailrace /var/lib/tailrace/checkpoints.json
  sed -i 's/^checkpoint_interval: 1s$/checkpoint_interval: 2s/' "$CONFIG"
  dpkg --force-confold -i "$deb"
  grep -q marker /var/lib/tailrace/checkpoints.json || fail "upgrade lost the checkpoints"
  grep -q '^checkpoint_interval: 2s$' "$CONFIG" || fail "upgrade replaced the edited config"
  /usr/bin/tailrace check --config "$CONFIG" >/dev/null

  step "dpkg -r (remove keeps config and state)"
  dpkg -r tailrace
  [ ! -e /usr/bin/tailrace ] || fail "remove left /usr/bin/tailrace"
  [ -f "$CONFIG" ] || fail "remove deleted the config"
  [ -f /var/lib/tailrace/checkpoints.json ] || fail "remove deleted the checkpoints"
  [ ! -e /usr/lib/systemd/system/tailrace.service ] || fail "remove left the unit"

  step "dpkg -P (purge removes config and state)"
  dpkg -P tailrace
  [ ! -e /etc/tailrace ] || fail "purge left /etc/tailrace"
  [ ! -e /var/lib/tailrace ] || fail "purge left /var/lib/tailrace"
  [ ! -e /etc/systemd/system/multi-user.target.wants/tailrace.service ] || fail "purge left the unit enabled"
  dpkg -s tailrace >/dev/null 2>&1 && fail "tailrace still installed"
else
  echo "packaging: install test skipped (TAILRACE_PKG_INSTALL=0, or not root)"
fi

step "all packaging checks passed; packages in $OUT"
