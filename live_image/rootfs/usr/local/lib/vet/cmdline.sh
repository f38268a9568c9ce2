# Sourced by the vet-* helpers: read one vet.* parameter from the kernel command line.
# The command line also carries vet.token=: never print it, only read what is asked for.

# vet_param NAME: print the value of NAME=... (the last one wins, as the kernel does);
# print nothing when absent. The shell's own `read`: no process is started (each one
# costs tens of ms on an emulated CPU, and these helpers are on the way to VET-READY).
vet_param() {
    _vet_value=""
    read -r _vet_line </proc/cmdline || true
    set -f  # the command line is data: no globbing of its words
    # shellcheck disable=SC2086 # word splitting is the point: parameters are words
    for _vet_word in $_vet_line; do
        case "$_vet_word" in
            "$1="*) _vet_value=${_vet_word#"$1="} ;;
        esac
    done
    set +f
    printf '%s' "$_vet_value"
}
