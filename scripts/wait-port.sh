# Sourced by the scripts that start gemcache servers on free ports.
# wait_port LOG PATTERN: prints the port a process logged (the last number in PATTERN's match) once
# it listens; exits with the log after 10 s.
wait_port() {
    for _ in $(seq 1 200); do
        port=$(grep -oE "$2" "$1" | grep -oE '[0-9]+$' | head -1 || true)
        [ -n "$port" ] && { echo "$port"; return; }
        sleep 0.05
    done
    echo "$(basename "$0"): did not start:" >&2; cat "$1" >&2; exit 1
}
