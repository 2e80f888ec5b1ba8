# Shared by scripts/apache-kafka.sh and scripts/ollama.sh (sourced, not run): the
# process a script started in the background, tracked by its pid file. The sourcing
# script sets PIDFILE and defines say().

# pid_alive: the process of $PIDFILE is running.
pid_alive() {
  [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

# stop_daemon GRACE_S: SIGTERM the process of $PIDFILE, SIGKILL it when it has not
# exited after GRACE_S seconds, then remove the pid file.
stop_daemon() {
  local grace=$1
  if ! pid_alive; then
    rm -f "$PIDFILE"
    say "not running"
    return
  fi
  local pid
  pid=$(cat "$PIDFILE")
  kill -TERM "$pid"
  local deadline=$((SECONDS + grace))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      say "no clean shutdown after $grace s; killing pid $pid"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.3
  done
  rm -f "$PIDFILE"
  say "stopped"
}
