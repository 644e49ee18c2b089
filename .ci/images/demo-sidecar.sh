#!/bin/sh
# Demo agent: shows what the worker handed it. Prints env NAMES only, never
# values, because the env carries the task's secrets.
echo "agent argv:"
for arg in "$@"; do
  printf '%s\n' "$arg"
done
echo "agent env names:"
env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' | sort
exit 0
