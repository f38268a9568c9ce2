# Sourced by the vet-* helpers: read one vet.* parameter from the kernel command line.
# The command line also carries vet.token=: never print it, only read what is asked for.

# vet_param NAME: print the value of NAME=... (the last one wins, as the kernel does);
# print nothing when absent.
vet_param() {
    _vet_value=""
    set -f  # the command line is data: no globbing of its words
    # shellcheck disable=SC2013 # word splitting is the point: parameters are words
    for _vet_word in $(cat /proc/cmdline); do
        case "$_vet_word" in
            "$1="*) _vet_value=${_vet_word#"$1="} ;;
        esac
    done
    set +f
    printf '%s' "$_vet_value"
}
