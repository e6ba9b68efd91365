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

.PHONY: all check demo linux-demo clean deps unit bench bench-quick
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
# instrumented.  make check runs each briefly (tests/system/fuzz_short.sh);
# make fuzz runs them for half an hour, growing $(BUILD)/fuzz/corpus-NAME.
FUZZ_CC    ?= clang
FUZZFLAGS  := -std=gnu11 -O1 -g -fno-strict-aliasing -fno-omit-frame-pointer \
	-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all $(WARNINGS) \
	-Wno-gnu-variable-sized-type-not-at-end -Wno-cast-align -Wno-format-nonliteral
FUZZ_SRCS  := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS  := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS))
FUZZ_OBJS  := $(FERRY_SRCS:%.c=$(BUILD)/fuzzobj/%.o)
FUZZ_LONG  ?= -max_total_time=1800
FUZZ_OPTS  := -max_len=65536 -timeout=20 -rss_limit_mb=4096 -print_final_stats=1

$(BUILD)/fuzzobj/%.o: %.c | $(DEPS_STAMP)
	@$(if $(Q),echo "  CC [fuzz] $<")
	$(Q)mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(CPPFLAGS) $(FUZZFLAGS) -c $< -o $@

$(BUILD)/fuzz/%: $(BUILD)/fuzzobj/tests/fuzz/%.o $(FUZZ_OBJS)
	@$(if $(Q),echo "  LD [fuzz] $@")
	$(Q)mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(FUZZFLAGS) -fsanitize=fuzzer $^ -o $@ $(LDLIBS)

.PHONY: fuzz
fuzz: $(FUZZ_BINS)
	$(Q)for f in $(FUZZ_BINS); do n=$$(basename $$f); \
		mkdir -p $(BUILD)/fuzz/corpus-$$n; \
		$$f $(FUZZ_OPTS) $(FUZZ_LONG) -artifact_prefix=$(BUILD)/fuzz/$$n- \
		    $(BUILD)/fuzz/corpus-$$n tests/fuzz/seeds/$$n || exit 1; \
	done

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

check: all $(BUILD)/ferry-san $(UNIT_BINS) $(TOOL_BINS) $(FUZZ_BINS)
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
