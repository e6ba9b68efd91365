#!/usr/bin/env bash
# The switchover commit when a message is lost or the link breaks: the
# guest runs on exactly one side, and where neither side can know, both
# stay paused, say so, and migrate-resolve settles it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/switchover_lib.sh"
require_kvm

scenario plain dest
scenario end-lost source "up:$END:drop"
scenario loaded-lost source "down:$LOADED:drop"
scenario go-lost doubt-both "up:$GO:drop"
scenario result-lost doubt-src "down:$RESULT:drop"
scenario result-lost-link-breaks doubt-src "down:$RESULT:cut"
scenario go-stalled doubt-both "up:$GO:stall"
scenario go-lost-dest-quits doubt-quit "up:$GO:drop"
scenario loaded-and-abort-lost source "down:$LOADED:drop" "up:$ABORT:drop"
scenario loaded-lost-link-stalls doubt-dst "down:$LOADED:drop" "up:$ABORT:stall"
scenario link-breaks-before-loaded source "down:$LOADED:cut"
scenario link-breaks-at-go doubt-gone "up:$GO:cut"
echo "all lost-message scenarios passed"
