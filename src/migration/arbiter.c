/*
 * arbiter.c - a chain of arbiters acquired in order and released in reverse
 * (arbiter.h).
 */
#include "migration/arbiter.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int arbiter_acquire(struct arbiter *a, const char *token, unsigned wait_ms, struct kv_err *err)
{
	struct arbiter *p;
	int r;

	for (p = a; p; p = p->next) {
		r = p->ops->acquire(p, token, wait_ms, err);
		if (r) {
			/* never keep part of the chain: holding any of it says
			 * "I run the VM" to the other side */
			for (struct arbiter *q = a; q != p; q = q->next)
				(void)q->ops->release(q, token, NULL);
			return r;
		}
	}
	return 0;
}

static int release_from(struct arbiter *p, const char *token, struct kv_err *err)
{
	int r;

	if (!p)
		return 0;
	r = release_from(p->next, token, err);	/* the last line first */
	if (r)
		return r;
	r = p->ops->release(p, token, err);
	if (r)
		(void)arbiter_acquire(p->next, token, 5000, NULL);	/* take the rest back */
	return r;
}

int arbiter_release(struct arbiter *a, const char *token, struct kv_err *err)
{
	return release_from(a, token, err);
}

int arbiter_held(struct arbiter *a)
{
	for (; a; a = a->next)
		if (!a->ops->held(a))
			return 0;
	return 1;
}

const char *arbiter_describe(const struct arbiter *a, char *buf, unsigned len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (; a && o < len; a = a->next)
		o += snprintf(buf + o, len - o, "%s%s", o ? " + " : "", a->ops->name);
	return buf;
}

void arbiter_chain(struct arbiter **head, struct arbiter *b)
{
	while (*head)
		head = &(*head)->next;
	*head = b;
}

void arbiter_destroy(struct arbiter *a)
{
	while (a) {
		struct arbiter *n = a->next;
		a->ops->destroy(a);
		a = n;
	}
}
