# ferry — non-recursive build.  `make V=1` shows every command.
#
#   make            build/ferry, build/probe.elf
#   make check      build everything (sanitized too) and run every test
#   make demo       the main job (see README.md)
#   make check-nested  the KVM tests in a TCG VM, without /dev/kvm (README.md)

BUILD   ?= build
V       ?= 0
Q       := $(if $(filter 1,$(V)),,@)
CC      := gcc

# kvmtool's warning list, plus a few more; every warning is an error.
WARNINGS := -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wundef \
	-Wstrict-prototypes -Wmissing-prototypes -Wmissing-declarations \
	-Wold-style-definition -Wpointer-arith -Wwrite-strings -Wvla \
	-Wredundant-decls -Wnested-externs -Wcast-align -Winit-self \
	-Wno-unused-parameter -Wno-missing-field-initializers

CPPFLAGS := -D_GNU_SOURCE -Isrc -MMD -MP
CFLAGS   := -std=gnu11 -O2 -g -fno-strict-aliasing -fstack-protector-strong $(WARNINGS)
SANFLAGS := -std=gnu11 -O1 -g -fno-strict-aliasing -fno-omit-frame-pointer \
	-fsanitize=address,undefined -fno-sanitize-recover=all $(WARNINGS)
LDLIBS   := -ljson-c -lxxhash -luring -lnbd -llz4 -lzstd -lgnutls -lpthread -lm

DEPS_STAMP := $(BUILD)/.deps-ok

FERRY_SRCS := $(sort $(wildcard src/*/*.c src/*/*/*.c))
FERRY_MAIN := src/main.c
FERRY_OBJS := $(FERRY_SRCS:%.c=$(BUILD)/obj/%.o)
FERRY_SAN_OBJS := $(FERRY_SRCS:%.c=$(BUILD)/san/%.o)

# cmocka tests: tests/unit (no KVM) and tests/kvm (raw /dev/kvm, skip without it).
UNIT_SRCS  := $(sort $(wildcard tests/unit/test_*.c tests/kvm/test_*.c))
UNIT_BINS  := $(patsubst %.c,$(BUILD)/tests/%,$(notdir $(UNIT_SRCS)))

.PHONY: all check test-deps demo linux-demo clean deps unit bench bench-quick
.SECONDARY:
all: $(BUILD)/ferry $(BUILD)/probe.elf

deps: $(DEPS_STAMP)
$(DEPS_STAMP): scripts/deps.sh
	$(Q)scripts/deps.sh
	$(Q)mkdir -p $(@D) && touch $@

$(BUILD)/obj/%.o: %.c | $(DEPS_STAMP)
	@$(if $(Q),echo "  CC      $<")
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/san/%.o: %.c | $(DEPS_STAMP)
	@$(if $(Q),echo "  CC [san] $<")
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(SANFLAGS) -c $< -o $@

$(BUILD)/ferry: $(BUILD)/obj/$(FERRY_MAIN:.c=.o) $(FERRY_OBJS)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

# The sanitized binary that the tests run.
$(BUILD)/ferry-san: $(BUILD)/san/$(FERRY_MAIN:.c=.o) $(FERRY_SAN_OBJS)
	@$(if $(Q),echo "  LD [san] $@")
	$(Q)$(CC) $(SANFLAGS) $^ -o $@ $(LDLIBS)

define test_link
	@$(if $(Q),echo "  LD [san] $@")
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(SANFLAGS) $^ -o $@ $(LDLIBS) -lcmocka
endef
$(BUILD)/tests/%: $(BUILD)/san/tests/unit/%.o $(FERRY_SAN_OBJS)
	$(test_link)
$(BUILD)/tests/%: $(BUILD)/san/tests/kvm/%.o $(FERRY_SAN_OBJS)
	$(test_link)

# libFuzzer targets (tests/fuzz/fuzz_*.c), built with clang: ferry's sources
# are compiled again with -fsanitize=fuzzer-no-link so the loader is
# instrumented (tests/fuzz/README.md).  make check runs each briefly over its
# seeds (tests/system/fuzz_short.sh); make fuzz runs each for FUZZ_SECONDS
# (60), make fuzz-long for an hour each, growing $(BUILD)/fuzz/corpus-NAME;
# make fuzz-merge keeps what reached new code in tests/fuzz/seeds (minimised);
# make fuzz-seeds writes the generated seeds again.
FUZZ_CC    ?= clang
FUZZFLAGS  := -std=gnu11 -O1 -g -fno-strict-aliasing -fno-omit-frame-pointer \
	-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all $(WARNINGS) \
	-Wno-gnu-variable-sized-type-not-at-end -Wno-cast-align -Wno-format-nonliteral
FUZZ_SRCS  := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS  := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS))
FUZZ_OBJS  := $(FERRY_SRCS:%.c=$(BUILD)/fuzzobj/%.o)
FUZZ_SECONDS ?= 60
FUZZ_OPTS  := -max_len=65536 -timeout=20 -rss_limit_mb=4096 -print_final_stats=1

$(BUILD)/fuzzobj/%.o: %.c | $(DEPS_STAMP)
	@$(if $(Q),echo "  CC [fuzz] $<")
	$(Q)mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(CPPFLAGS) $(FUZZFLAGS) -c $< -o $@

$(BUILD)/fuzz/%: $(BUILD)/fuzzobj/tests/fuzz/%.o $(FUZZ_OBJS)
	@$(if $(Q),echo "  LD [fuzz] $@")
	$(Q)mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(FUZZFLAGS) -fsanitize=fuzzer $^ -o $@ $(FUZZ_LDFLAGS) $(LDLIBS)

# Without /dev/kvm the loader's machines are the harness's own (no VM behind them).
$(BUILD)/fuzz/fuzz_incoming: FUZZ_LDFLAGS := -Wl,--wrap=machine_create \
	-Wl,--wrap=machine_state_apply -Wl,--wrap=machine_state_encode
# The standby's the same, always; and its epoch commits, waits and clock, to check and steer them.
$(BUILD)/fuzz/fuzz_standby: FUZZ_LDFLAGS := -Wl,--wrap=machine_create \
	-Wl,--wrap=machine_state_apply -Wl,--wrap=machine_state_encode \
	-Wl,--wrap=mig_epoch_end -Wl,--wrap=mig_commit_wait -Wl,--wrap=vm_now_ns

.PHONY: fuzz fuzz-long fuzz-merge fuzz-seeds
fuzz: $(FUZZ_BINS)
	$(Q)for f in $(FUZZ_BINS); do n=$$(basename $$f); \
		mkdir -p $(BUILD)/fuzz/corpus-$$n; \
		echo "  FUZZ    $$n ($(FUZZ_SECONDS) s)"; \
		$$f $(FUZZ_OPTS) -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(BUILD)/fuzz/$$n- \
		    $(BUILD)/fuzz/corpus-$$n tests/fuzz/seeds/$$n >$(BUILD)/fuzz/$$n.log 2>&1 || \
		    { tail -n 40 $(BUILD)/fuzz/$$n.log; exit 1; }; \
		grep -E '^stat::(number_of_executed_units|peak_rss)' $(BUILD)/fuzz/$$n.log; \
	done

# An hour of each (FUZZ_SECONDS=N for another length); not in make check.
fuzz-long:
	$(Q)$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(if $(filter command line environment,$(origin FUZZ_SECONDS)),$(FUZZ_SECONDS),3600)

# The seeds again: the named ones (generated or hand-made) as they are, and of
# the rest (tests/fuzz/seeds, $(BUILD)/fuzz/corpus-NAME) only the inputs that
# reach code the others do not, a near-minimal set of them (libFuzzer's
# -set_cover_merge=1 on edges alone, -use_counters=0: hit counts would keep
# many more).
fuzz-merge: $(FUZZ_BINS)
	$(Q)for f in $(FUZZ_BINS); do n=$$(basename $$f); d=$(BUILD)/fuzz/merge-$$n; \
		rm -rf $$d $$d.old; mkdir -p $$d $$d.old $(BUILD)/fuzz/corpus-$$n; \
		find tests/fuzz/seeds/$$n -type f -regextype egrep -regex '.*/[0-9a-f]{40}' \
		    -exec mv {} $$d.old/ \; ; \
		cp tests/fuzz/seeds/$$n/* $$d/ 2>/dev/null; \
		$$f -set_cover_merge=1 -use_counters=0 -max_len=65536 -timeout=20 -rss_limit_mb=4096 $$d $$d.old \
		    $(BUILD)/fuzz/corpus-$$n >$$d.log 2>&1 || { tail -n 20 $$d.log; exit 1; }; \
		cp $$d/* tests/fuzz/seeds/$$n/; \
		echo "  MERGE   $$n: $$(ls tests/fuzz/seeds/$$n | wc -l) seeds"; \
	done

# The generated seeds (tests/fuzz/README.md says which need /dev/kvm).
fuzz-seeds: $(FUZZ_BINS)
	$(Q)FUZZ_INCOMING_SEEDS=tests/fuzz/seeds/fuzz_incoming $(BUILD)/fuzz/fuzz_incoming
	$(Q)FUZZ_RETURN_PATH_SEEDS=tests/fuzz/seeds/fuzz_return_path $(BUILD)/fuzz/fuzz_return_path
	$(Q)FUZZ_SAVEFILE_SEEDS=tests/fuzz/seeds/fuzz_savefile $(BUILD)/fuzz/fuzz_savefile
	$(Q)FUZZ_STANDBY_SEEDS=tests/fuzz/seeds/fuzz_standby $(BUILD)/fuzz/fuzz_standby

# Helpers the end-to-end tests run (not tests themselves).
TOOL_SRCS := $(sort $(wildcard tests/tools/*.c))
TOOL_BINS := $(patsubst tests/tools/%.c,$(BUILD)/tools/%,$(TOOL_SRCS))
$(BUILD)/tools/%: tests/tools/%.c | $(DEPS_STAMP)
	@$(if $(Q),echo "  CC      $<")
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) -std=gnu11 -O2 -g -D_GNU_SOURCE $(WARNINGS) $< -o $@

# What TLS costs the channel beside plain TCP (bench/tls_channel.c; not in make check).
$(BUILD)/bench/tls_channel: bench/tls_channel.c $(FERRY_OBJS)
	@$(if $(Q),echo "  LD      $@")
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $^ -o $@ $(LDLIBS)

# The RAM source's send path: CPU per GiB, copying and zero-copy (bench/ram_send.c; not in make check).
$(BUILD)/bench/ram_send: bench/ram_send.c $(FERRY_OBJS)
	@$(if $(Q),echo "  LD      $@")
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $^ -o $@ $(LDLIBS)

include guest/guest.mk

unit: $(UNIT_BINS)

# What tests/run.sh runs and drives: build it first to run tests/run.sh alone.
test-deps: all $(BUILD)/ferry-san $(UNIT_BINS) $(TOOL_BINS) $(FUZZ_BINS)

check: test-deps
	$(Q)BUILD=$(BUILD) tests/run.sh

# The KVM tests inside a VM that QEMU emulates (scripts/nested-kvm.sh), for
# machines without /dev/kvm; slow, so not part of make check.  NESTED_TESTS
# are tests/run.sh patterns; a VM that cannot be had (no archive, no SVM in
# QEMU) is a skip, as in make check.
# test_hostile_stream is left out: inside, it outlasts run.sh's 10 minutes.
NESTED_TESTS   ?= test_hostile_return test_machine_state test_x86_state \
	boot_workloads migrate_basic
NESTED_TIMEOUT ?= 3600
.PHONY: check-nested
check-nested: all $(BUILD)/ferry-san $(UNIT_BINS) $(TOOL_BINS)
	$(Q)rc=0; BUILD=$(BUILD) scripts/nested-kvm.sh --timeout $(NESTED_TIMEOUT) -- \
		env BUILD=$(BUILD) TESTS="$(NESTED_TESTS)" JOBS=1 tests/run.sh || rc=$$?; \
	[ $$rc -eq 77 ] || exit $$rc

demo: all
	$(Q)scripts/demo.sh $(BUILD)

# Debian's kernel and a busybox initramfs, migrated with a workload running
# (scripts/linux-demo.sh); on kvm-pvm it says why it cannot, and stops.
linux-demo: all
	$(Q)scripts/linux-demo.sh $(BUILD)

# Side by side with QEMU (bench/README.md); needs root for network namespaces.
bench: all
	$(Q)bench/run.sh full
bench-quick: all
	$(Q)bench/run.sh quick

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
