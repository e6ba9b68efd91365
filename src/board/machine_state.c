#include "board/machine_state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/pagewalk.h"
#include "util/hash.h"
#include "util/le.h"
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
	for (unsigned i = 0; i < m->nr_devs && !err; i++) {
		const struct device_ops *d = device_table[m->devs[i].id];
		if (d->quiesce)
			err = d->quiesce(m->devs[i].dev);
		if (err)
			pr_err("cannot quiesce %s %u: %s", d->name, m->devs[i].index, strerror(-err));
	}
	return err;
}

int machine_inactivate(struct machine *m)
{
	unsigned i;
	int err = 0;

	for (i = 0; i < m->nr_devs && !err; i++) {
		const struct device_ops *d = device_table[m->devs[i].id];
		if (d->inactivate)
			err = d->inactivate(m->devs[i].dev);
		if (err)
			pr_err("cannot hand over %s %u: %s", d->name, m->devs[i].index, strerror(-err));
	}
	/* All or nothing: what was handed over is taken back (no one can have it yet). */
	char why[256];
	while (err && i-- > 0) {
		const struct device_ops *d = device_table[m->devs[i].id];
		if (d->activate && d->activate(m->devs[i].dev, why, sizeof(why)))
			pr_err("%s", why);
	}
	return err;
}

int machine_activate(struct machine *m, char *why, size_t whylen)
{
	unsigned i;
	int err = 0;

	for (i = 0; i < m->nr_devs && !err; i++) {
		const struct device_ops *d = device_table[m->devs[i].id];
		if (d->activate)
			err = d->activate(m->devs[i].dev, why, whylen);
	}
	/* Nothing held on failure, so that whoever should run can. */
	while (err && i-- > 0) {
		const struct device_ops *d = device_table[m->devs[i].id];
		if (d->inactivate && d->inactivate(m->devs[i].dev))
			pr_warn("cannot release %s %u again", d->name, m->devs[i].index);
	}
	return err;
}

/* The record name of an instance: "NAME", or "NAME.N" for a multi-instance model. */
static void machine_record_name(const struct device_ops *d, unsigned index, char *name,
				size_t len)
{
	if (d->multi)
		snprintf(name, len, "%s.%u", d->vmsd->name, index);
	else
		snprintf(name, len, "%s", d->vmsd->name);
}

/* Every device instance with state, one record each, in registry order. */
static int machine_devices_save(struct machine *m, struct vmstate_buf *out)
{
	char name[64];
	int err = 0;

	for (unsigned i = 0; i < m->nr_devs && !err; i++) {
		const struct device_ops *d = device_table[m->devs[i].id];
		if (!d->vmsd)
			continue;
		void *state = calloc(1, d->vmsd->size);
		if (!state)
			return -ENOMEM;
		machine_record_name(d, m->devs[i].index, name, sizeof(name));
		err = d->save(m->devs[i].dev, state);
		if (err)
			pr_err("cannot save %s: %s", name, strerror(-err));
		else
			err = vmstate_save_as(d->vmsd, name, state, out);
		free(state);
	}
	return err;
}

/* x86_read_fn over the machine's RAM: a table outside it ends the walk. */
static bool machine_read_guest(void *opaque, uint64_t gpa, unsigned len, uint64_t *val)
{
	const uint8_t *p = guest_memory_ptr(opaque, gpa, len);
	uint64_t v = 0;

	if (!p)
		return false;
	for (unsigned i = 0; i < len; i++)
		v |= (uint64_t)__atomic_load_n(p + i, __ATOMIC_RELAXED) << (8 * i);
	*val = v;
	return true;
}

/* Page gpa's index into out[n] unless outside RAM or there already: 1 if added. */
static unsigned machine_add_page(struct machine *m, uint64_t gpa, uint64_t *out, unsigned n)
{
	uint64_t index = guest_memory_page_index(&m->vm.mem, gpa);

	if (index == GUEST_PAGE_NONE)
		return 0;
	for (unsigned d = 0; d < n; d++)
		if (out[d] == index)
			return 0;
	out[n] = index;
	return 1;
}

int machine_first_pages(struct machine *m, uint64_t *out, unsigned max)
{
	struct vm *vm = &m->vm;
	unsigned n = 0;

	for (unsigned i = 0; i < vm->nr_vcpus && n < max; i++) {
		uint64_t gpa[6 * X86_WALK_MAX];
		int k = x86_vcpu_first_pages(vm->vcpus[i].fd, machine_read_guest, &vm->mem, gpa,
					     6 * X86_WALK_MAX);
		if (k < 0)
			return k;
		for (int j = 0; j < k && n < max; j++)
			n += machine_add_page(m, gpa[j], out, n);
	}
	for (unsigned i = 0; i < m->nr_devs && n < max; i++) {
		const struct device_ops *d = device_table[m->devs[i].id];
		uint64_t gpa[32];
		if (!d->first_pages)
			continue;
		unsigned k = d->first_pages(m->devs[i].dev, gpa, 32);
		for (unsigned j = 0; j < k && n < max; j++)
			n += machine_add_page(m, gpa[j], out, n);
	}
	return (int)n;
}

int machine_state_save(struct machine *m, struct vmstate_buf *out)
{
	int err = machine_quiesce(m);

	return err ? err : machine_state_encode(m, out);
}

int machine_state_encode(struct machine *m, struct vmstate_buf *out)
{
	struct vm *vm = &m->vm;
	struct x86_vcpu_state *cpu;
	struct x86_vm_state vms;
	int err = 0;

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

/* Decode the next record, which must be of description d, named `want`. */
static int machine_state_next(const uint8_t *data, size_t len, size_t *off,
			      const struct vmstate_desc *d, const char *want, void *obj,
			      struct vmstate_error *err)
{
	char name[64];
	uint32_t version;
	size_t rlen;

	if (vmstate_peek(data + *off, len - *off, name, sizeof(name), &version, &rlen)) {
		snprintf(err->msg, sizeof(err->msg), "state: malformed or missing record where '%s' was due",
			 want);
		return -EINVAL;
	}
	int r = vmstate_load_as(d, want, obj, data + *off, rlen, err);
	if (!r)
		*off += rlen;
	return r;
}

/* Is the record at off named `want`?  (Where a multi-instance model's records end.) */
static bool machine_state_next_is(const uint8_t *data, size_t len, size_t off, const char *want)
{
	char name[64];
	uint32_t version;
	size_t rlen;

	return off < len && !vmstate_peek(data + off, len - off, name, sizeof(name), &version, &rlen) &&
	       !strcmp(name, want);
}

/* One device record into st->devs.  Returns 0 or -errno. */
static int machine_state_dev_next(const uint8_t *data, size_t len, size_t *off,
				  enum device_id id, unsigned index, struct machine_state *st,
				  struct vmstate_error *err)
{
	const struct device_ops *d = device_table[id];
	struct machine_state_dev *sd = &st->devs[st->nr_devs];
	char name[64];

	if (st->nr_devs == MACHINE_MAX_DEVS) {
		snprintf(err->msg, sizeof(err->msg), "state: more than %d device records",
			 MACHINE_MAX_DEVS);
		return -EINVAL;
	}
	machine_record_name(d, index, name, sizeof(name));
	sd->state = calloc(1, d->vmsd->size);
	if (!sd->state)
		return -ENOMEM;
	sd->id = id;
	sd->index = index;
	st->nr_devs++;
	return machine_state_next(data, len, off, d->vmsd, name, sd->state, err);
}

/* Every device record: once each, or NAME.0, NAME.1, ... for multi-instance models. */
static int machine_state_decode_devs(const uint8_t *data, size_t len, size_t *off,
				     struct machine_state *st, struct vmstate_error *err)
{
	char name[64];
	int r = 0;

	for (unsigned id = 0; id < DEVICE_NR && !r; id++) {
		const struct device_ops *d = device_table[id];
		if (!d->vmsd)
			continue;
		if (!d->multi) {
			r = machine_state_dev_next(data, len, off, id, 0, st, err);
			continue;
		}
		for (unsigned n = 0; !r; n++) {
			machine_record_name(d, n, name, sizeof(name));
			if (!machine_state_next_is(data, len, *off, name))
				break;
			r = machine_state_dev_next(data, len, off, id, n, st, err);
		}
	}
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
	r = machine_state_next(data, len, &off, &x86_vm_state_vmsd, x86_vm_state_vmsd.name, &st->vm,
			       err);
	for (unsigned i = 0; i < nr_vcpus && !r; i++)
		r = machine_state_next(data, len, &off, &x86_vcpu_state_vmsd, x86_vcpu_state_vmsd.name,
				       &st->vcpus[i], err);
	if (!r)
		r = machine_state_decode_devs(data, len, &off, st, err);
	if (!r && off != len) {
		char name[64];
		uint32_t version;
		size_t rlen;
		if (!vmstate_peek((const uint8_t *)data + off, len - off, name, sizeof(name), &version,
				  &rlen))
			snprintf(err->msg, sizeof(err->msg), "state: record '%s' where none was due "
				 "(a device this ferry does not know, or out of order)", name);
		else
			snprintf(err->msg, sizeof(err->msg), "state: %zu unexpected bytes after the "
				 "last record", len - off);
		r = -EINVAL;
	}
	if (r)
		machine_state_free(st);
	return r;
}

void *machine_state_dev(const struct machine_state *st, enum device_id id, unsigned index)
{
	for (unsigned i = 0; i < st->nr_devs; i++)
		if (st->devs[i].id == id && st->devs[i].index == index)
			return st->devs[i].state;
	return NULL;
}

int machine_state_match(const struct machine *m, const struct machine_state *st,
			struct vmstate_error *err)
{
	char name[64];

	/* A device the stream carries must be here: its guest uses it. */
	for (unsigned i = 0; i < st->nr_devs; i++) {
		const struct device_ops *d = device_table[st->devs[i].id];
		void *dev = machine_dev(m, st->devs[i].id, st->devs[i].index);
		machine_record_name(d, st->devs[i].index, name, sizeof(name));
		if (!dev) {
			snprintf(err->msg, sizeof(err->msg), "the source has %s, which this destination "
				 "lacks: start it with the same --disk and --net options as the source", name);
			return -EINVAL;
		}
		if (d->check && d->check(dev, st->devs[i].state, err->msg, sizeof(err->msg)))
			return -EINVAL;
	}
	/* And a device here that the source did not have would start from nothing. */
	for (unsigned i = 0; i < m->nr_devs; i++) {
		const struct device_ops *d = device_table[m->devs[i].id];
		if (!d->vmsd || machine_state_dev(st, m->devs[i].id, m->devs[i].index))
			continue;
		machine_record_name(d, m->devs[i].index, name, sizeof(name));
		snprintf(err->msg, sizeof(err->msg), "this destination has %s, which the source "
			 "lacks: start it with the same --disk and --net options as the source", name);
		return -EINVAL;
	}
	return 0;
}

int machine_state_apply(struct machine *m, const struct machine_state *st)
{
	struct vmstate_error verr;
	struct vm *vm = &m->vm;
	int err = 0;

	if (st->nr_vcpus != vm->nr_vcpus)
		return -EINVAL;
	if (machine_state_match(m, st, &verr)) {
		pr_err("%s", verr.msg);
		return -EINVAL;
	}
	for (unsigned i = 0; i < vm->nr_vcpus && !err; i++)
		err = x86_vcpu_state_set(vm->vcpus[i].fd, &st->vcpus[i]);
	/* Clock last among the KVM state: guest time resumes from here. */
	if (!err)
		err = x86_vm_state_set(vm->vm_fd, &st->vm);
	for (unsigned i = 0; i < st->nr_devs && !err; i++) {
		const struct device_ops *d = device_table[st->devs[i].id];
		err = d->load(machine_dev(m, st->devs[i].id, st->devs[i].index), st->devs[i].state);
		if (err)
			pr_err("cannot load the state of %s %u: %s", d->name, st->devs[i].index,
			       strerror(-err));
	}
	return err;
}

void machine_devices_resume(struct machine *m)
{
	for (unsigned i = 0; i < m->nr_devs; i++) {
		const struct device_ops *d = device_table[m->devs[i].id];
		if (d->resume)
			d->resume(m->devs[i].dev);
	}
}

void machine_state_free(struct machine_state *st)
{
	free(st->vcpus);
	st->vcpus = NULL;
	st->nr_vcpus = 0;
	for (unsigned i = 0; i < st->nr_devs; i++) {
		free(st->devs[i].state);
		st->devs[i].state = NULL;
	}
	st->nr_devs = 0;
}

/* Record i of st (vm, vCPUs, devices, in stream order): its description, name, object. */
static const void *machine_state_record(const struct machine_state *st, unsigned i,
					const struct vmstate_desc **d, char *name, size_t len)
{
	if (i == 0) {
		*d = &x86_vm_state_vmsd;
		snprintf(name, len, "%s", x86_vm_state_vmsd.name);
		return &st->vm;
	}
	if (i <= st->nr_vcpus) {
		*d = &x86_vcpu_state_vmsd;
		snprintf(name, len, "%s[%u]", x86_vcpu_state_vmsd.name, i - 1);
		return &st->vcpus[i - 1];
	}
	const struct machine_state_dev *sd = &st->devs[i - 1 - st->nr_vcpus];
	*d = device_table[sd->id]->vmsd;
	machine_record_name(device_table[sd->id], sd->index, name, len);
	return sd->state;
}

int machine_state_digest(const struct machine_state *st, uint64_t *digest)
{
	unsigned n = 1 + st->nr_vcpus + st->nr_devs;
	uint8_t *each = malloc((size_t)n * 8);
	const struct vmstate_desc *d;
	char name[64];
	int err = 0;

	if (!each)
		return -ENOMEM;
	for (unsigned i = 0; i < n && !err; i++) {
		const void *obj = machine_state_record(st, i, &d, name, sizeof(name));
		uint64_t h = 0;
		/* The record's wire name: vCPUs all share one. */
		err = vmstate_digest_as(d, i && i <= st->nr_vcpus ? d->name : name, obj, &h);
		le_put(each + (size_t)i * 8, h, 8);
		pr_debug("state digest: %s %016llx", name, (unsigned long long)h);
	}
	if (!err)
		*digest = XXH3_64bits(each, (size_t)n * 8);
	free(each);
	return err;
}

bool machine_state_diff(const struct machine_state *a, const struct machine_state *b,
			char *why, size_t len)
{
	unsigned n = 1 + a->nr_vcpus + a->nr_devs;
	const struct vmstate_desc *d, *db;
	char name[64], nb[64], path[128];

	if (a->nr_vcpus != b->nr_vcpus || a->nr_devs != b->nr_devs) {
		snprintf(why, len, "the records differ in number");
		return true;
	}
	for (unsigned i = 0; i < n; i++) {
		const void *oa = machine_state_record(a, i, &d, name, sizeof(name));
		const void *ob = machine_state_record(b, i, &db, nb, sizeof(nb));
		if (d != db || strcmp(name, nb)) {
			snprintf(why, len, "record %s where %s was", nb, name);
			return true;
		}
		if (vmstate_diff(d, oa, ob, path, sizeof(path))) {
			snprintf(why, len, "%s field %s", name, path);
			return true;
		}
	}
	return false;
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
		machine_virtio_wire(m);	/* the old VM took its irqfds and ioeventfds along */
	if (!err)
		err = machine_state_apply(m, &st);
	if (!err)
		machine_devices_resume(m);
	if (err)
		pr_err("rebuild: cannot recreate the VM: %s", strerror(-err));
	machine_state_free(&st);
out:
	vmstate_buf_free(&buf);
	return err;
}
