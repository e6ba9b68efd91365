#!/usr/bin/env bash
# The switchover commit when a message comes late or twice, or one side
# stops (SIGSTOP) for longer than the switchover timeout at each step: the
# guest runs on exactly one side, and a late message settles a doubt.
# serial: 3 s stops and delays against a 1 s switchover timeout.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/switchover_lib.sh"
require_kvm

scenario end-late source "up:$END:delay=3000"
scenario end-twice source "up:$END:dup"
scenario dst-stopped-at-end source "up:$END:stop=DST:3000"
scenario loaded-late source "down:$LOADED:delay=3000"
scenario loaded-twice dest "down:$LOADED:dup"
scenario src-stopped-at-loaded dest "down:$LOADED:stop=SRC:3000"
scenario go-late dest "up:$GO:delay=3000"
scenario go-twice dest "up:$GO:dup"
scenario src-stopped-at-go dest "up:$GO:stop=SRC:3000"
scenario dst-stopped-at-go dest "up:$GO:stop=DST:3000"
scenario result-late dest "down:$RESULT:delay=3000"
scenario result-twice dest "down:$RESULT:dup"
scenario src-stopped-at-result dest "down:$RESULT:stop=SRC:3000"
echo "all late-message scenarios passed"
