#!/usr/bin/env bash
# smoke-test.sh — boot the VM image under qemu and check the gateway answers.
#
#   packaging/vm/smoke-test.sh [IMAGE.qcow2]     (default dist/duo-confidential-vm.qcow2)
#
# Boots a throw-away overlay of IMAGE (the image itself is not changed) with a
# DUOSEED seed disk (vfat, made with mtools: no mounts) holding a config that
# listens on 0.0.0.0:5052 with a dummy Privatemode API key and a GitLab URL
# that does not resolve. The network is qemu user mode with restrict=on: the
# guest reaches nothing outside, as in an air-gapped site; only the loopback
# forward 127.0.0.1:PORT -> guest:5052 exists. The appliance then serves but
# is not ready (no attestation, no GitLab keys), which is what liveness
# (/monitoring/healthz, 200 "{}") is about. The certificate comes from the
# VM's own local CA, so that one check uses curl --insecure.
#
# Passes when the first-boot unit has configured the service and
# https://127.0.0.1:PORT/monitoring/healthz answers 200 within TIMEOUT
# seconds (default 480). KVM is used when /dev/kvm is usable (ACCEL=tcg
# forces software emulation); the script says which. When KVM was picked
# automatically and qemu exits early or reports a KVM error (nested KVM
# breaks in several ways: "KVM internal error", "failed to set MSR", an
# assertion in kvm_buf_set_msrs), the boot is retried once under TCG. The
# serial console goes to SERIAL_LOG (default: a file in the work directory,
# printed on failure).
#
# For the script's own tests: QEMU (default qemu-system-x86_64) and
# KVM_DEVICE (default /dev/kvm) name the emulator and the device to probe,
# POLL_SECONDS (default 5) how often to look.
#
# Host packages: qemu-system-x86 qemu-utils dosfstools mtools curl.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"
image="${1:-${repo}/dist/duo-confidential-vm.qcow2}"
timeout_s="${TIMEOUT:-480}"

die() {
	echo "smoke-test.sh: $*" >&2
	exit 1
}
[[ -f "${image}" ]] || die "no image at ${image}; build it with: sudo packaging/vm/build-image.sh"
qemu="${QEMU:-qemu-system-x86_64}"
kvm_device="${KVM_DEVICE:-/dev/kvm}"
for tool in "${qemu}" qemu-img mkfs.vfat mcopy curl; do
	command -v "${tool}" >/dev/null 2>&1 || die "${tool} is missing; see this script's header"
done

work="$(mktemp -d)"
serial="${SERIAL_LOG:-${work}/serial.log}"
qemu_pid=""
cleanup() {
	if [[ -n "${qemu_pid}" ]] && kill -0 "${qemu_pid}" 2>/dev/null; then
		kill "${qemu_pid}"
		wait "${qemu_pid}" 2>/dev/null || true
	fi
	rm -rf "${work}"
}
trap cleanup EXIT

accel="${ACCEL:-}"
if [[ -z "${accel}" ]]; then
	accel=tcg
	if [[ -r "${kvm_device}" && -w "${kvm_device}" ]]; then
		accel=kvm
	fi
fi
case "${accel}" in
kvm) accel_args=(-accel kvm -cpu host) ;;
tcg) accel_args=(-accel "tcg,thread=multi" -cpu max) ;;
*) die "ACCEL must be kvm or tcg" ;;
esac

# A free loopback port: the first in a range that nothing answers on.
port=""
for p in $(seq $((20000 + RANDOM % 20000)) 41000); do
	if ! (echo >"/dev/tcp/127.0.0.1/${p}") 2>/dev/null; then
		port="${p}"
		break
	fi
done
[[ -n "${port}" ]] || die "no free loopback port"

cat >"${work}/config.yaml" <<'CFG'
# Smoke test: serves without a Privatemode account or a GitLab (not ready).
privatemode:
  api_key_file: /etc/duo-confidential/privatemode-api-key
gateway:
  listen: 0.0.0.0:5052
  gitlab_url: https://gitlab.example.invalid
  models:
    default: smoke-test-model
CFG
echo "dummy-key-for-the-smoke-test" >"${work}/privatemode-api-key"
seed="${work}/seed.img"
truncate -s 8M "${seed}"
mkfs.vfat -n DUOSEED "${seed}" >/dev/null
mcopy -i "${seed}" "${work}/config.yaml" "${work}/privatemode-api-key" ::/

fail() {
	echo "--- serial console (last 80 lines)" >&2
	tail -n 80 "${serial}" >&2 || true
	echo "--- qemu" >&2
	cat "${work}/qemu.log" >&2 || true
	die "$*"
}
boot() {
	echo "booting ${image} with ${accel}; gateway forwarded to 127.0.0.1:${port}; serial console: ${serial}"
	rm -f "${overlay}"
	qemu-img create -q -f qcow2 -b "$(realpath "${image}")" -F qcow2 "${overlay}"
	start=${SECONDS}
	"${qemu}" "${accel_args[@]}" -m 1024 -smp 2 \
		-display none -monitor none -serial "file:${serial}" -no-reboot \
		-drive "file=${overlay},if=virtio,format=qcow2" \
		-drive "file=${seed},if=virtio,format=raw,readonly=on" \
		-nic "user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:${port}-:5052" \
		>"${work}/qemu.log" 2>&1 &
	qemu_pid=$!
}
stop_qemu() {
	kill "${qemu_pid}" 2>/dev/null || true
	wait "${qemu_pid}" 2>/dev/null || true
	qemu_pid=""
}

overlay="${work}/disk.qcow2"
boot
url="https://127.0.0.1:${port}/monitoring/healthz"
while :; do
	elapsed=$((SECONDS - start))
	# Nested KVM can fail in many ways: qemu aborts at once (an assertion
	# after "failed to set MSR 0x10a") or hangs after "KVM internal error".
	# Either way, when KVM was picked automatically, retry once under TCG.
	# One look at the process per round, so that the retry and the failure
	# below judge the same state.
	exited=""
	kill -0 "${qemu_pid}" 2>/dev/null || exited=1
	if [[ "${accel}" == kvm ]] && { [[ -n "${exited}" ]] ||
		grep -qE 'KVM internal error|failed to set MSR|kvm_buf_set_msrs|kvm_init_vcpu|KVM_[A-Z_]+ failed' "${work}/qemu.log" 2>/dev/null; }; then
		reason="$(grep -m1 -iE 'kvm|msr|assert' "${work}/qemu.log" 2>/dev/null | tr -d '\r' || true)"
		stop_qemu
		[[ -z "${ACCEL:-}" ]] || fail "KVM failed (ACCEL=kvm was asked for): ${reason:-qemu exited}"
		echo "KVM failed after ${elapsed}s (${reason:-qemu exited}); falling back to TCG"
		accel=tcg
		accel_args=(-accel "tcg,thread=multi" -cpu max)
		boot
		continue
	fi
	[[ -z "${exited}" ]] || fail "qemu exited after ${elapsed}s (${accel})"
	if grep -q 'duo-confidential-firstboot: .*stays off' "${serial}" 2>/dev/null; then
		fail "first boot did not configure the service"
	fi
	# --insecure: the VM's local CA is not in this machine's trust store.
	body="$(curl --insecure --silent --max-time 5 --write-out ' %{http_code}' "${url}" 2>/dev/null || true)"
	if [[ "${body}" == "{} 200" ]]; then
		echo "PASS: ${url} answered 200 {} ${elapsed}s after qemu started (${accel})"
		grep -a 'duo-confidential-firstboot: configured' "${serial}" | tr -d '\r' || true
		exit 0
	fi
	((elapsed < timeout_s)) || fail "no healthy gateway within ${timeout_s}s (${accel})"
	sleep "${POLL_SECONDS:-5}"
done
