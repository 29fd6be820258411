# Shared helpers for scripts/stack, scripts/demo and scripts/test.
# Sourced, not executed.

# Debian packages the native stack needs, and one command each provides.
STACK_PACKAGES=(
  "curl:curl"
  "jq:jq"
  "redis-server:redis-server"
  "prometheus:prometheus"
  "promtool:prometheus"
  "prometheus-alertmanager:prometheus-alertmanager"
  "amtool:prometheus-alertmanager"
  "prometheus-redis-exporter:prometheus-redis-exporter"
)

# What scripts/test needs beyond the stack: the HTML report is checked in
# headless Chromium (loadgen/tests/it/html.rs).
TEST_PACKAGES=(
  "chromium:chromium"
)

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ensure_packages [command:package ...]: installs the Debian packages whose
# commands are missing (apt-get update once). Fails loudly when it cannot.
ensure_packages() {
  local missing=() entry cmd pkg
  for entry in "$@"; do
    cmd=${entry%%:*}
    pkg=${entry#*:}
    if ! command -v "$cmd" >/dev/null 2>&1 && [[ ! " ${missing[*]} " =~ " ${pkg} " ]]; then
      missing+=("$pkg")
    fi
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing missing Debian packages: ${missing[*]}"
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "need root or sudo to install: ${missing[*]}"
    sudo=(sudo)
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    || die "apt-get update failed"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
  for entry in "$@"; do
    command -v "${entry%%:*}" >/dev/null 2>&1 || die "${entry%%:*} still missing after installing ${entry#*:}"
  done
}

ensure_stack_packages() { ensure_packages "${STACK_PACKAGES[@]}"; }
ensure_test_packages() { ensure_packages "${STACK_PACKAGES[@]}" "${TEST_PACKAGES[@]}"; }

# release_binary NAME: path of a release binary of this workspace, wherever
# cargo puts it (CARGO_TARGET_DIR, relative or absolute, or .cargo/config).
# Needs $repo.
release_binary() {
  local dir
  dir=$(cd "$repo" && cargo metadata --format-version 1 --no-deps --locked 2>/dev/null | jq -r .target_directory) \
    || die "cargo metadata failed: cannot locate the target directory"
  [[ -n $dir && $dir != null ]] || die "cargo metadata did not report a target directory"
  echo "$dir/release/$1"
}
