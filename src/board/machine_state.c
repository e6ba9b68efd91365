#include "board/machine_state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

int machine_quiesce(struct machine *m)
{
	struct vm *vm = &m->vm;
	int err = 0;

	if (vm_get_state(vm) != VM_STATE_PAUSED)
		return -EBUSY;
	/* vCPUs first: finishing their pending I/O may touch devices. */
	for (unsigned i = 0; i < vm->nr_vcpus && !err; i++)
		err = x86_vcpu_quiesce(vm->vcpus[i].fd, vm->vcpus[i].run);
	for (unsigned id = 0; id < DEVICE_NR && !err; id++) {
		const struct device_ops *d = device_table[id];
		if (d->quiesce)
			err = d->quiesce(m->devs[id]);
		if (err)
			pr_err("cannot quiesce %s: %s", d->name, strerror(-err));
	}
	return err;
}

/* Every device with state, one record each, in registry order. */
static int machine_devices_save(struct machine *m, struct vmstate_buf *out)
{
	int err = 0;

	for (unsigned id = 0; id < DEVICE_NR && !err; id++) {
		const struct device_ops *d = device_table[id];
		if (!d->vmsd)
			continue;
		void *state = calloc(1, d->vmsd->size);
		if (!state)
			return -ENOMEM;
		err = d->save(m->devs[id], state);
		if (err)
			pr_err("cannot save %s: %s", d->name, strerror(-err));
		else
			err = vmstate_save(d->vmsd, state, out);
		free(state);
	}
	return err;
}

int machine_state_save(struct machine *m, struct vmstate_buf *out)
{
	struct vm *vm = &m->vm;
	struct x86_vcpu_state *cpu;
	struct x86_vm_state vms;
	int err;

	err = machine_quiesce(m);
	if (err)
		return err;
	cpu = malloc(sizeof(*cpu));
	if (!cpu)
		return -ENOMEM;
	for (unsigned i = 0; i < vm->nr_vcpus && !err; i++) {
		struct vcpu *v = &vm->vcpus[i];
		err = x86_vcpu_state_get(v->fd, cpu);
		if (!err && i == 0)
			err = x86_vm_state_get(vm->vm_fd, &vms);
		if (!err && i == 0)
			err = vmstate_save(&x86_vm_state_vmsd, &vms, out);
		if (!err)
			err = vmstate_save(&x86_vcpu_state_vmsd, cpu, out);
	}
	free(cpu);
	return err ? err : machine_devices_save(m, out);
}

/* Decode the next record, which must be of description d. */
static int machine_state_next(const uint8_t *data, size_t len, size_t *off,
			      const struct vmstate_desc *d, void *obj, struct vmstate_error *err)
{
	char name[64];
	uint32_t version;
	size_t rlen;

	if (vmstate_peek(data + *off, len - *off, name, sizeof(name), &version, &rlen)) {
		snprintf(err->msg, sizeof(err->msg), "state: malformed or missing record where '%s' was due",
			 d->name);
		return -EINVAL;
	}
	int r = vmstate_load(d, obj, data + *off, rlen, err);
	if (!r)
		*off += rlen;
	return r;
}

int machine_state_decode(const void *data, size_t len, unsigned nr_vcpus,
			 struct machine_state *st, struct vmstate_error *err)
{
	size_t off = 0;
	int r;

	memset(st, 0, sizeof(*st));
	st->vcpus = calloc(nr_vcpus, sizeof(*st->vcpus));
	if (!st->vcpus)
		return -ENOMEM;
	st->nr_vcpus = nr_vcpus;
	r = machine_state_next(data, len, &off, &x86_vm_state_vmsd, &st->vm, err);
	for (unsigned i = 0; i < nr_vcpus && !r; i++)
		r = machine_state_next(data, len, &off, &x86_vcpu_state_vmsd, &st->vcpus[i], err);
	for (unsigned id = 0; id < DEVICE_NR && !r; id++) {
		const struct vmstate_desc *d = device_table[id]->vmsd;
		if (!d)
			continue;
		st->devs[id] = calloc(1, d->size);
		r = st->devs[id] ? machine_state_next(data, len, &off, d, st->devs[id], err) : -ENOMEM;
	}
	if (!r && off != len) {
		snprintf(err->msg, sizeof(err->msg), "state: %zu unexpected bytes after the last record",
			 len - off);
		r = -EINVAL;
	}
	if (r)
		machine_state_free(st);
	return r;
}

int machine_state_apply(struct machine *m, const struct machine_state *st)
{
	struct vm *vm = &m->vm;
	int err = 0;

	if (st->nr_vcpus != vm->nr_vcpus)
		return -EINVAL;
	for (unsigned i = 0; i < vm->nr_vcpus && !err; i++)
		err = x86_vcpu_state_set(vm->vcpus[i].fd, &st->vcpus[i]);
	/* Clock last among the KVM state: guest time resumes from here. */
	if (!err)
		err = x86_vm_state_set(vm->vm_fd, &st->vm);
	for (unsigned id = 0; id < DEVICE_NR && !err; id++) {
		const struct device_ops *d = device_table[id];
		if (!d->vmsd)
			continue;
		if (!st->devs[id])
			return -EINVAL;
		err = d->load(m->devs[id], st->devs[id]);
		if (err)
			pr_err("cannot load the state of %s: %s", d->name, strerror(-err));
	}
	return err;
}

void machine_state_free(struct machine_state *st)
{
	free(st->vcpus);
	st->vcpus = NULL;
	st->nr_vcpus = 0;
	for (unsigned id = 0; id < DEVICE_NR; id++) {
		free(st->devs[id]);
		st->devs[id] = NULL;
	}
}

int machine_state_rebuild(struct machine *m)
{
	struct machine_state st;
	struct vmstate_error verr;
	struct vmstate_buf buf;
	int err;

	vmstate_buf_init(&buf);
	err = machine_state_save(m, &buf);
	if (err) {
		pr_err("rebuild: cannot save state: %s", strerror(-err));
		goto out;
	}
	/* Decode before tearing anything down, as a destination would. */
	err = machine_state_decode(buf.data, buf.len, m->vm.nr_vcpus, &st, &verr);
	if (err) {
		pr_err("rebuild: saved state does not load: %s", verr.msg);
		goto out;
	}
	err = vm_recreate_kvm(&m->vm);
	if (!err)
		err = machine_state_apply(m, &st);
	if (err)
		pr_err("rebuild: cannot recreate the VM: %s", strerror(-err));
	machine_state_free(&st);
out:
	vmstate_buf_free(&buf);
	return err;
}
