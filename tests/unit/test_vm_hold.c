/*
 * The operator's pause (vm_hold) outlasts a pause of ferry's own: an epoch
 * or a save that pauses for a moment and resumes must not undo it.  A VM
 * without vCPUs parks at once, so no KVM is needed.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/vm.h"

static struct vm vm;

static int setup(void **state)
{
	memset(&vm, 0, sizeof(vm));
	pthread_mutex_init(&vm.lock, NULL);
	pthread_cond_init(&vm.cond, NULL);
	vm.state = VM_STATE_RUNNING;
	return 0;
}

static int teardown(void **state)
{
	pthread_cond_destroy(&vm.cond);
	pthread_mutex_destroy(&vm.lock);
	return 0;
}

static void test_own_pause_resumes(void **state)
{
	assert_int_equal(vm_pause(&vm, 1000000), 0);
	assert_int_equal(vm_get_state(&vm), VM_STATE_PAUSED);
	assert_int_equal(vm_resume(&vm), 0);
	assert_int_equal(vm_get_state(&vm), VM_STATE_RUNNING);
}

/* The race: ferry paused for an epoch, the operator paused, the epoch resumes. */
static void test_hold_outlasts_a_pause_of_ours(void **state)
{
	assert_int_equal(vm_pause(&vm, 1000000), 0);		/* the epoch */
	assert_int_equal(vm_hold(&vm, 1000000), 0);		/* ferry pause */
	assert_int_equal(vm_resume(&vm), 0);			/* the epoch ends */
	assert_int_equal(vm_get_state(&vm), VM_STATE_PAUSED);
	/* Further epochs pause and resume: still held. */
	assert_int_equal(vm_pause(&vm, 1000000), 0);
	assert_int_equal(vm_resume(&vm), 0);
	assert_int_equal(vm_get_state(&vm), VM_STATE_PAUSED);
	/* Only the operator's resume lets it run. */
	assert_int_equal(vm_release(&vm), 0);
	assert_int_equal(vm_get_state(&vm), VM_STATE_RUNNING);
	/* And then a pause of ours resumes as before. */
	assert_int_equal(vm_pause(&vm, 1000000), 0);
	assert_int_equal(vm_resume(&vm), 0);
	assert_int_equal(vm_get_state(&vm), VM_STATE_RUNNING);
}

static void test_stopped(void **state)
{
	vm.state = VM_STATE_STOPPED;
	assert_int_equal(vm_hold(&vm, 1000000), -ESRCH);
	assert_false(vm.held);					/* a failed hold holds nothing */
	assert_int_equal(vm_release(&vm), -ESRCH);
	assert_int_equal(vm_resume(&vm), -ESRCH);
}

/* A VM handed over by a migration: no resume, ours or the operator's, until the fence lifts. */
static void test_fence(void **state)
{
	assert_int_equal(vm_hold(&vm, 1000000), 0);
	vm_fence(&vm, true);
	assert_true(vm_fenced(&vm));
	assert_int_equal(vm_release(&vm), -EPERM);
	assert_true(vm.held);					/* a refused release lets nothing go */
	assert_int_equal(vm_resume(&vm), -EPERM);
	assert_int_equal(vm_get_state(&vm), VM_STATE_PAUSED);
	vm_fence(&vm, false);
	assert_int_equal(vm_resume(&vm), 0);			/* still the operator's pause */
	assert_int_equal(vm_get_state(&vm), VM_STATE_PAUSED);
	assert_int_equal(vm_release(&vm), 0);
	assert_int_equal(vm_get_state(&vm), VM_STATE_RUNNING);
}

/* A destination's VM before its guest arrives: the operator cannot start it. */
static void test_release_before_start(void **state)
{
	vm.state = VM_STATE_CREATED;
	assert_int_equal(vm_release(&vm), -EAGAIN);
	assert_int_equal(vm_get_state(&vm), VM_STATE_CREATED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_own_pause_resumes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hold_outlasts_a_pause_of_ours, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stopped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_release_before_start, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
