/* dicomsniffd._fastpath: the compiled hot path (docs/performance.md, "The compiled piece").
 *
 * Two things, and nothing else:
 *
 * decode_batch()  the decode layer's batch interface (decode.Decoder.decode_batch) for
 *                 link types with an ethertype (Ethernet, Linux SLL, SLL2): the same
 *                 clean shapes as the Python fast path -- any stack of VLAN tags, IPv4
 *                 without options or IPv6 without extension headers, TCP, fully captured
 *                 -- become the same Segment fields, handed to emit(ts, *fields) as call
 *                 arguments (no tuple per packet). Every other frame is handed, as
 *                 bytes, to the Python decoder's general path, which decides and counts.
 *
 * Bypass          a bounded table of "leases" granted by the flow table (flows.FlowTable):
 *                 for one direction of a flow whose stream handler said "the next N bytes
 *                 I would skip without looking" (a DICOM PDV being skipped), in-order
 *                 segments shorter than what is left of N are consumed here, and so are
 *                 in-order pure ACKs of either direction. Nothing else is: any other
 *                 packet of a leased flow first ends the lease (its state is written back
 *                 to the Python objects through on_sync) and then takes the Python path.
 *                 At the end of every batch all touched leases are written back, so
 *                 between batches the Python objects are exact -- unless the Bypass was
 *                 made with sync_each_batch=False: then only when a lease ends and on
 *                 sync(), which the flow table calls before anything reads its state
 *                 (timeouts, eviction, the pipeline's flush). With thousands of short
 *                 concurrent associations a lease lives across several batches, and the
 *                 write-back of each (one Python call) cost more than the few packets it
 *                 had consumed (docs/performance.md, fifth session).
 *
 * Why in C: pure Python costs ~2.6 us per packet before the DICOM core is reached,
 * against ~2.1 us for everything that 0.40 of the raw read loop allows; ~89 % of the
 * packets of a C-STORE are continuation bytes of a PDV that the framer skips anyway.
 * No socket, no clock, no allocation per consumed packet.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MSS 1460 /* the super-packet limit until a SYN announces a larger MSS */
#define TCP_SYN 0x02
#define ETH_IPV4 0x0800
#define ETH_IPV6 0x86DD
#define TCP_FIN_SYN_RST 0x07
#define LINK_ETHERNET 0
#define LINK_SLL 1
#define LINK_SLL2 2
#define SEG_FIELDS 11 /* a decode.Segment: src, sport, dst, dport, seq, ack, flags, window,
                       * payload, seg_len, ip_id */

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ------------------------------------------------------------------ parsed frame */

typedef struct {
    uint8_t alen;          /* 4 or 16 */
    const uint8_t *src, *dst;
    uint16_t sport, dport, window;
    uint32_t seq, ack;
    uint8_t flags;
    long ip_id;            /* -1 for IPv6, as the Python decoder */
    Py_ssize_t opts;       /* TCP options [opts, start) within the frame */
    Py_ssize_t start, end; /* payload [start, end) within the frame */
} Parsed;

/* The MSS option among a SYN's TCP options o[0:n], or 0 (decode.syn_mss, exactly). */
static long syn_mss(const uint8_t *o, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    while (i < n) {
        uint8_t kind = o[i];
        if (kind == 0) return 0;
        if (kind == 1) {
            i++;
            continue;
        }
        if (i + 1 >= n || o[i + 1] < 2) return 0;
        if (kind == 2 && o[i + 1] == 4 && i + 4 <= n) return rd16(o + i + 2);
        i += o[i + 1];
    }
    return 0;
}

/* The clean shapes, exactly as decode.Decoder's fast paths accept them (_ipv4, _ipv6
 * after _ethertype's VLAN loop). Returns 1 if the frame is one; 0 sends it to the
 * general path, which redoes the work and does the counting. */
static int parse_clean(const uint8_t *f, Py_ssize_t caplen, int link, Parsed *p)
{
    Py_ssize_t off;
    unsigned etype;
    if (link == LINK_ETHERNET) {
        if (caplen < 14) return 0;
        etype = rd16(f + 12);
        off = 14;
    } else if (link == LINK_SLL) {
        if (caplen < 16) return 0;
        etype = rd16(f + 14);
        off = 16;
    } else {
        if (caplen < 20) return 0;
        etype = rd16(f);
        off = 20;
    }
    while (etype == 0x8100 || etype == 0x88A8 || etype == 0x9100 || etype == 0x9200) {
        if (off + 4 > caplen) return 0;
        etype = rd16(f + off + 2);
        off += 4;
    }
    Py_ssize_t tcp, start, end;
    if (etype == ETH_IPV4) {
        if (off + 40 > caplen) return 0;
        const uint8_t *ip = f + off;
        if (ip[0] != 0x45 || ip[9] != 6 || (rd16(ip + 6) & 0x3FFF)) return 0;
        tcp = off + 20;
        end = off + rd16(ip + 2);
        p->alen = 4;
        p->src = ip + 12;
        p->dst = ip + 16;
        p->ip_id = rd16(ip + 4);
    } else if (etype == ETH_IPV6) {
        if (off + 60 > caplen) return 0;
        const uint8_t *ip = f + off;
        if ((ip[0] >> 4) != 6 || ip[6] != 6) return 0;
        tcp = off + 40;
        end = off + 40 + rd16(ip + 4);
        p->alen = 16;
        p->src = ip + 8;
        p->dst = ip + 24;
        p->ip_id = -1;
    } else {
        return 0;
    }
    const uint8_t *t = f + tcp;
    start = tcp + ((t[12] >> 4) << 2);
    /* TCP header >= 20 bytes, inside the IP length, IP length inside the capture. */
    if (!(tcp + 20 <= start && start <= end && end <= caplen)) return 0;
    p->sport = rd16(t);
    p->dport = rd16(t + 2);
    p->seq = rd32(t + 4);
    p->ack = rd32(t + 8);
    p->flags = t[13];
    p->window = rd16(t + 14);
    p->opts = tcp + 20;
    p->start = start;
    p->end = end;
    return 1;
}

/* ------------------------------------------------------------------ flow keys */

/* Bytes only, so the struct has no padding and memcmp/hash over it are well defined. */
typedef struct {
    uint8_t alen;
    uint8_t src[16], dst[16];
    uint8_t sport[2], dport[2];
} Key;

static void key_set(Key *k, uint8_t alen, const uint8_t *src, uint16_t sport,
                    const uint8_t *dst, uint16_t dport)
{
    memset(k, 0, sizeof(*k));
    k->alen = alen;
    memcpy(k->src, src, alen);
    memcpy(k->dst, dst, alen);
    k->sport[0] = (uint8_t)(sport >> 8);
    k->sport[1] = (uint8_t)sport;
    k->dport[0] = (uint8_t)(dport >> 8);
    k->dport[1] = (uint8_t)dport;
}

static void key_reverse(const Key *k, Key *r)
{
    key_set(r, k->alen, k->dst, rd16(k->dport), k->src, rd16(k->sport));
}

static int key_eq(const Key *a, const Key *b) { return memcmp(a, b, sizeof(Key)) == 0; }

static uint64_t key_hash(const Key *k)
{
    /* FNV-1a over the key bytes; the table is small and sparsely filled. */
    const uint8_t *b = (const uint8_t *)k;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < sizeof(Key); i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

/* ------------------------------------------------------------------ leases */

typedef struct {
    uint32_t seq, len, ack;
    long ip_id;
    double ts;
} Rec;

typedef struct {
    PyObject *half;     /* the flow table's _Half of the skipping direction (strong ref) */
    Key key;            /* that direction's key; the reverse key maps here too */
    uint32_t next;      /* next expected sequence number of the skipping direction */
    int64_t budget;     /* bytes the handler still skips (consume only chunks < budget) */
    int rev_ok;         /* the other direction's in-order pure ACKs may be consumed */
    uint32_t rev_next;  /* ... when their sequence number is this */
    double data_ts;     /* the skipping direction's last data segment (flows/stalls.py) */
    double stall_after; /* a longer gap is a stall: never consumed, Python judges it */
    /* The chain (dicom/pdvchain.py): past the budget, P-DATA-TFs of one dataset PDV of
     * context ctx, not the last fragment, at most pdu_limit long, are walked here. */
    int chain;
    uint8_t ctx;
    int64_t pdu_limit;
    int64_t pdv_len;    /* data bytes of the PDV being skipped (its DATA item's count) */
    double hdr_ts;      /* when its PDU header came (the framer's _pdu_ts) */
    /* since the last write-back */
    int64_t taken;      /* payload bytes consumed */
    long nrec;          /* data segments consumed */
    Rec last, prev;
    double last_ts;
    uint32_t fwd_ack, rev_ack;  /* the latest pure ACK of each direction, and when */
    double fwd_ack_ts, rev_ack_ts;
    int fwd_acked, rev_acked;
    int walked;         /* the chain moved the framer's state (a write-back says where) */
    long pdvs;          /* PDVs the chain ended */
    int64_t pdv_bytes;  /* ... their data bytes */
    double done_ts;     /* ... when the last one ended */
    int touched;        /* in the dirty list */
    int32_t dirty_pos;  /* ... at this index (O(1) removal when it ends) */
    int used;
} Lease;

typedef struct {
    Key key;
    int32_t lease;      /* -1: empty slot */
    uint8_t reverse;    /* the key is the lease's reverse direction */
} Slot;

typedef struct {
    PyObject_HEAD
    PyObject *segment;  /* FlowTable.segment: where every packet not consumed goes */
    PyObject *on_sync;  /* FlowTable._lease_synced(half, next, taken, last_seen, nrec, last, prev,
                         * ended, fwd_ack, rev_ack, chained) */
    Lease *leases;
    int32_t *free_list;
    int32_t nfree;
    int32_t capacity;   /* leases allocated: grows by doubling up to max_leases */
    int32_t max_leases;
    int32_t nleases;
    Slot *slots;
    uint64_t mask;
    int32_t *dirty;
    int32_t ndirty;
    int sync_each_batch; /* write the touched leases back at the end of decode_batch */
    unsigned long long consumed;  /* segments consumed here (the flow table adds them) */
    unsigned long long granted, refused, ended;
} Bypass;

static PyTypeObject BypassType;

static int slot_insert(Bypass *b, const Key *k, int32_t lease, uint8_t reverse);
static void key_reverse(const Key *k, Key *r);

/* (Re)size to new_cap leases: lease indices stay valid, the slot table is rebuilt. */
static int grow(Bypass *b, int32_t new_cap)
{
    uint64_t nslots = 8;
    while (nslots < (uint64_t)new_cap * 4) nslots <<= 1; /* two keys a lease, load <= 1/2 */
    Lease *leases = PyMem_Realloc(b->leases, (size_t)new_cap * sizeof(Lease));
    if (leases == NULL) return PyErr_NoMemory(), -1;
    b->leases = leases;
    int32_t *free_list = PyMem_Realloc(b->free_list, (size_t)new_cap * sizeof(int32_t));
    if (free_list == NULL) return PyErr_NoMemory(), -1;
    b->free_list = free_list;
    int32_t *dirty = PyMem_Realloc(b->dirty, (size_t)new_cap * sizeof(int32_t));
    if (dirty == NULL) return PyErr_NoMemory(), -1;
    b->dirty = dirty;
    Slot *slots = PyMem_Calloc((size_t)nslots, sizeof(Slot));
    if (slots == NULL) return PyErr_NoMemory(), -1;
    memset(&b->leases[b->capacity], 0, (size_t)(new_cap - b->capacity) * sizeof(Lease));
    for (int32_t i = new_cap - 1; i >= b->capacity; i--) b->free_list[b->nfree++] = i;
    PyMem_Free(b->slots);
    b->slots = slots;
    b->mask = nslots - 1;
    for (uint64_t i = 0; i < nslots; i++) slots[i].lease = -1;
    for (int32_t i = 0; i < b->capacity; i++) {
        if (b->leases[i].used) {
            Key rk;
            key_reverse(&b->leases[i].key, &rk);
            slot_insert(b, &b->leases[i].key, i, 0);
            slot_insert(b, &rk, i, 1);
        }
    }
    b->capacity = new_cap;
    return 0;
}

static Slot *slot_find(Bypass *b, const Key *k)
{
    uint64_t i = key_hash(k) & b->mask;
    for (;;) {
        Slot *s = &b->slots[i];
        if (s->lease < 0) return NULL;
        if (key_eq(&s->key, k)) return s;
        i = (i + 1) & b->mask;
    }
}

static int slot_insert(Bypass *b, const Key *k, int32_t lease, uint8_t reverse)
{
    uint64_t i = key_hash(k) & b->mask;
    for (;;) {
        Slot *s = &b->slots[i];
        if (s->lease < 0) {
            memcpy(&s->key, k, sizeof(Key));
            s->lease = lease;
            s->reverse = reverse;
            return 0;
        }
        if (key_eq(&s->key, k)) return -1; /* already leased */
        i = (i + 1) & b->mask;
    }
}

/* Linear probing deletion by backward shift: no tombstones, so lookups stay short. */
static void slot_delete(Bypass *b, Slot *s)
{
    uint64_t i = (uint64_t)(s - b->slots);
    uint64_t j = i;
    b->slots[i].lease = -1;
    for (;;) {
        j = (j + 1) & b->mask;
        Slot *t = &b->slots[j];
        if (t->lease < 0) return;
        uint64_t home = key_hash(&t->key) & b->mask;
        /* t may move to i if its home is not cyclically within (i, j] */
        int in_range = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!in_range) {
            memcpy(&b->slots[i], t, sizeof(Slot));
            t->lease = -1;
            i = j;
        }
    }
}

/* (seq, len, ip_id, ack, ts): the flow table's SPAN-duplicate history record, or None. */
static PyObject *rec_or_none(const Rec *r, int present)
{
    if (!present) return Py_NewRef(Py_None);
    return Py_BuildValue("(kklkd)", (unsigned long)r->seq, (unsigned long)r->len, r->ip_id,
                         (unsigned long)r->ack, r->ts);
}

/* (ack, ts): a direction's latest pure ACK consumed here, or None. */
static PyObject *ack_or_none(uint32_t ack, double ts, int present)
{
    if (!present) return Py_NewRef(Py_None);
    return Py_BuildValue("(kd)", (unsigned long)ack, ts);
}

/* Write a lease's progress back to the Python objects. ended: the lease is over;
 * fresh: a packet was consumed since the last write-back (else last_seen is None). */
static int lease_sync(Bypass *b, Lease *l, int ended, int fresh)
{
    PyObject *last = rec_or_none(&l->last, l->nrec >= 1);
    PyObject *prev = rec_or_none(&l->prev, l->nrec >= 2);
    PyObject *seen = fresh ? PyFloat_FromDouble(l->last_ts) : Py_NewRef(Py_None);
    PyObject *fwd = ack_or_none(l->fwd_ack, l->fwd_ack_ts, l->fwd_acked);
    PyObject *rev = ack_or_none(l->rev_ack, l->rev_ack_ts, l->rev_acked);
    PyObject *chained = l->walked ? Py_BuildValue("(lLddLL)", l->pdvs, (long long)l->pdv_bytes,
                                                l->done_ts, l->hdr_ts, (long long)l->budget,
                                                (long long)l->pdv_len)
                                : Py_NewRef(Py_None);
    PyObject *r = NULL;
    if (last && prev && seen && fwd && rev && chained) { /* else out of memory: raised */
        r = PyObject_CallFunction(b->on_sync, "OkLOlOOiOOO", l->half, (unsigned long)l->next,
                                  (long long)l->taken, seen, l->nrec, last, prev, ended, fwd,
                                  rev, chained);
        l->taken = 0;
        l->nrec = 0;
        l->fwd_acked = l->rev_acked = 0;
        l->walked = 0;
        l->pdvs = 0;
        l->pdv_bytes = 0;
    }
    Py_XDECREF(last);
    Py_XDECREF(prev);
    Py_XDECREF(seen);
    Py_XDECREF(fwd);
    Py_XDECREF(rev);
    Py_XDECREF(chained);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

/* Take a touched lease off the dirty list: the list's last entry moves into its place.
 * O(1): without sync_each_batch the list may hold every lease between write-backs. */
static void dirty_remove(Bypass *b, int32_t idx)
{
    int32_t pos = b->leases[idx].dirty_pos;
    int32_t moved = b->dirty[--b->ndirty];
    b->dirty[pos] = moved;
    b->leases[moved].dirty_pos = pos;
}

/* End a lease: write it back (if it consumed anything since the last write-back, or to
 * tell the flow table it ended) and free its slots. */
static int lease_end(Bypass *b, int32_t idx)
{
    Lease *l = &b->leases[idx];
    if (!l->used) return 0;
    Key rk;
    key_reverse(&l->key, &rk);
    Slot *s = slot_find(b, &l->key);
    if (s) slot_delete(b, s);
    s = slot_find(b, &rk);
    if (s) slot_delete(b, s);
    int fresh = l->touched;
    if (fresh) {
        dirty_remove(b, idx);
        l->touched = 0;
    }
    l->used = 0;
    b->nleases--;
    b->free_list[b->nfree++] = idx;
    b->ended++;
    PyObject *half = l->half;
    l->half = NULL;
    /* on_sync with ended=1 even when nothing was consumed: the flow table clears its
     * "leased" mark there. */
    Lease copy = *l;
    copy.half = half;
    int rc = lease_sync(b, &copy, 1, fresh);
    Py_DECREF(half);
    return rc;
}

static int sync_dirty(Bypass *b)
{
    int rc = 0;
    while (b->ndirty > 0) {
        int32_t idx = b->dirty[--b->ndirty];
        Lease *l = &b->leases[idx];
        l->touched = 0;
        if (l->used && lease_sync(b, l, 0, 1) < 0) rc = -1;
        if (rc < 0) break;
    }
    return rc;
}

static inline void touch(Bypass *b, int32_t idx, Lease *l, double ts)
{
    l->last_ts = ts;
    if (!l->touched) {
        l->touched = 1;
        l->dirty_pos = b->ndirty;
        b->dirty[b->ndirty++] = idx;
    }
}

/* The segment d[0:n] ends the PDV being skipped at d[budget] (n >= budget; budget 0: the
 * lease is at a PDU boundary, that PDV already counted): walk the PDU headers after it
 * (PS3.8 9.3.5: type 0x04, reserved, length(4); PDV length(4), context id, message control
 * header) while each is a P-DATA-TF holding exactly one dataset PDV of the chain's
 * context, not the last fragment, even length, the PDU at most pdu_limit long: what
 * PduFramer._feed's 12-byte header path takes with no item but the DATA item of the PDV
 * it ends, none of them the last (dicom/pdvchain.py). 1 when the segment ends inside
 * such a PDV or at its end, with the lease updated; 0 (nothing changed) when anything
 * else comes first, even a header split by the segment's end: Python frames it. */
static int chain_walk(Lease *l, const uint8_t *d, Py_ssize_t n, double ts)
{
    int64_t pos = l->budget, dlen = l->pdv_len, budget = 0, ended = 0;
    long pdvs = 0;
    int headers = 0;
    if (pos > 0) { /* the PDV being skipped ends here */
        ended = dlen;
        pdvs = 1;
    }
    while (pos < n) {
        if (n - pos < 12) return 0;
        const uint8_t *h = d + pos;
        int64_t length = rd32(h + 2), pdv = rd32(h + 6);
        dlen = pdv - 2;
        if (h[0] != 0x04 || h[10] != l->ctx || h[11] != 0 || (pdv & 1) || dlen <= 0 ||
            dlen != length - 6 || length > l->pdu_limit)
            return 0;
        pos += 12;
        headers = 1;
        if (n - pos < dlen) { /* the segment ends inside this PDV */
            budget = dlen - (n - pos);
            break;
        }
        pos += dlen; /* ... or ends it too */
        ended += dlen;
        pdvs++;
    }
    l->budget = budget;
    l->pdv_len = dlen;
    if (headers) l->hdr_ts = ts;
    if (pdvs) l->done_ts = ts;
    l->pdvs += pdvs;
    l->pdv_bytes += ended;
    l->walked = 1;
    return 1;
}

/* Consume the packet if the lease allows it. 1: consumed; 0: not (lease left alone).
 * d: the segment's payload. */
static int try_consume(Bypass *b, Slot *s, const Parsed *p, const uint8_t *d, double ts)
{
    Lease *l = &b->leases[s->lease];
    Py_ssize_t n = p->end - p->start;
    if ((p->flags & TCP_FIN_SYN_RST) || !p->window) return 0;
    if (s->reverse) {
        if (!l->rev_ok || n || p->seq != l->rev_next) return 0;
        l->rev_ack = p->ack;
        l->rev_ack_ts = ts;
        l->rev_acked = 1;
        touch(b, s->lease, l, ts);
        return 1;
    }
    if (p->seq != l->next) return 0;
    if (n) {
        if (ts - l->data_ts > l->stall_after) return 0; /* a stall: Python names its cause */
        if ((int64_t)n < l->budget)
            l->budget -= n;
        else if (!l->chain || !chain_walk(l, d, n, ts))
            return 0; /* the handler must see the PDV's end */
        l->data_ts = ts;
        l->taken += n;
        l->next = (uint32_t)(l->next + (uint32_t)n);
        l->prev = l->last;
        l->last.seq = p->seq;
        l->last.len = (uint32_t)n;
        l->last.ip_id = p->ip_id;
        l->last.ack = p->ack;
        l->last.ts = ts;
        l->nrec++;
    } else {
        l->fwd_ack = p->ack;
        l->fwd_ack_ts = ts;
        l->fwd_acked = 1;
    }
    touch(b, s->lease, l, ts);
    return 1;
}

/* A packet of this flow takes the Python path: end the lease first so Python sees exact
 * state. Looks up both directions' keys (the lease holds both). */
static int end_lease_for(Bypass *b, const Key *k)
{
    Slot *s = slot_find(b, k);
    if (s == NULL) return 0;
    return lease_end(b, s->lease);
}

/* ------------------------------------------------------------------ Bypass type */

static int Bypass_init(Bypass *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"segment", "on_sync", "max_leases", "sync_each_batch", NULL};
    PyObject *segment, *on_sync;
    int max_leases = 4096, sync_each_batch = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|ip", kwlist, &segment, &on_sync,
                                     &max_leases, &sync_each_batch))
        return -1;
    if (max_leases < 1 || max_leases > (1 << 22)) {
        PyErr_SetString(PyExc_ValueError, "max_leases must be 1..4194304");
        return -1;
    }
    if (self->leases != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Bypass is already initialised");
        return -1;
    }
    self->max_leases = max_leases;
    self->sync_each_batch = sync_each_batch;
    /* Start small: a table sized for the limit would cost ~1.3 MB for 4096 leases on a
     * link that never carries more than a few concurrent transfers. */
    if (grow(self, max_leases < 64 ? max_leases : 64) < 0) return -1;
    Py_INCREF(segment);
    Py_INCREF(on_sync);
    self->segment = segment;
    self->on_sync = on_sync;
    return 0;
}

static int Bypass_traverse(Bypass *self, visitproc visit, void *arg)
{
    Py_VISIT(self->segment);
    Py_VISIT(self->on_sync);
    if (self->leases)
        for (int32_t i = 0; i < self->capacity; i++)
            if (self->leases[i].used) Py_VISIT(self->leases[i].half);
    return 0;
}

static int Bypass_clear(Bypass *self)
{
    Py_CLEAR(self->segment);
    Py_CLEAR(self->on_sync);
    if (self->leases) {
        for (int32_t i = 0; i < self->capacity; i++) {
            if (self->leases[i].used) {
                self->leases[i].used = 0;
                Py_CLEAR(self->leases[i].half);
            }
        }
    }
    self->nleases = 0;
    self->ndirty = 0;
    if (self->slots)
        for (uint64_t i = 0; i <= self->mask; i++) self->slots[i].lease = -1;
    return 0;
}

static void Bypass_dealloc(Bypass *self)
{
    PyObject_GC_UnTrack(self);
    Bypass_clear(self);
    PyMem_Free(self->leases);
    PyMem_Free(self->free_list);
    PyMem_Free(self->dirty);
    PyMem_Free(self->slots);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Build a Key from Python (src bytes, sport, dst bytes, dport). 0 ok, -1 not a key. */
static int key_from_py(PyObject *src, PyObject *sport, PyObject *dst, PyObject *dport, Key *k)
{
    if (!PyBytes_Check(src) || !PyBytes_Check(dst)) return -1;
    Py_ssize_t n = PyBytes_GET_SIZE(src);
    if ((n != 4 && n != 16) || PyBytes_GET_SIZE(dst) != n) return -1;
    long sp = PyLong_AsLong(sport), dp = PyLong_AsLong(dport);
    if ((sp == -1 || dp == -1) && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    if (sp < 0 || sp > 65535 || dp < 0 || dp > 65535) return -1;
    key_set(k, (uint8_t)n, (const uint8_t *)PyBytes_AS_STRING(src), (uint16_t)sp,
            (const uint8_t *)PyBytes_AS_STRING(dst), (uint16_t)dp);
    return 0;
}

/* Methods of a Bypass whose __init__ never ran (Bypass.__new__(Bypass)) must not crash. */
static int ready(Bypass *self)
{
    if (self->slots != NULL && self->on_sync != NULL) return 1;
    PyErr_SetString(PyExc_RuntimeError, "Bypass is not initialised");
    return 0;
}

static PyObject *Bypass_grant(Bypass *self, PyObject *args)
{
    if (!ready(self)) return NULL;
    PyObject *half, *src, *sport, *dst, *dport;
    unsigned long next;
    long long budget, rev_next;
    double data_ts = Py_HUGE_VAL, stall_after = Py_HUGE_VAL;
    PyObject *chain = Py_None;
    if (!PyArg_ParseTuple(args, "OOOOOkLL|ddO", &half, &src, &sport, &dst, &dport, &next, &budget,
                          &rev_next, &data_ts, &stall_after, &chain))
        return NULL;
    int ctx = 0;
    long long pdu_limit = 0, pdv_len = 0;
    double hdr_ts = 0.0;
    if (chain != Py_None &&
        !PyArg_ParseTuple(chain, "iLLd", &ctx, &pdu_limit, &pdv_len, &hdr_ts))
        return NULL;
    Key k, rk;
    if (key_from_py(src, sport, dst, dport, &k) < 0 || budget <= 0 || next > 0xFFFFFFFFUL) {
        self->refused++;
        Py_RETURN_FALSE;
    }
    if (slot_find(self, &k) != NULL) {
        self->refused++;
        Py_RETURN_FALSE;
    }
    key_reverse(&k, &rk);
    if (key_eq(&k, &rk) || slot_find(self, &rk) != NULL) { /* self-connection or taken */
        self->refused++;
        Py_RETURN_FALSE;
    }
    if (self->nfree == 0) {
        if (self->capacity >= self->max_leases) { /* bounded: the flow stays in Python */
            self->refused++;
            Py_RETURN_FALSE;
        }
        int32_t cap = self->capacity * 2;
        if (grow(self, cap < self->max_leases ? cap : self->max_leases) < 0) return NULL;
    }
    int32_t idx = self->free_list[--self->nfree];
    Lease *l = &self->leases[idx];
    memset(l, 0, sizeof(*l));
    l->used = 1;
    Py_INCREF(half);
    l->half = half;
    memcpy(&l->key, &k, sizeof(Key));
    l->next = (uint32_t)next;
    l->budget = budget;
    l->data_ts = data_ts;
    l->stall_after = stall_after;
    l->chain = chain != Py_None && ctx >= 0 && ctx <= 255;
    l->ctx = (uint8_t)ctx;
    l->pdu_limit = pdu_limit;
    l->pdv_len = pdv_len;
    l->hdr_ts = hdr_ts;
    l->rev_ok = rev_next >= 0 && rev_next <= 0xFFFFFFFFLL;
    l->rev_next = l->rev_ok ? (uint32_t)rev_next : 0;
    slot_insert(self, &k, idx, 0);
    slot_insert(self, &rk, idx, 1);
    self->nleases++;
    self->granted++;
    Py_RETURN_TRUE;
}

static PyObject *Bypass_revoke(Bypass *self, PyObject *args)
{
    if (!ready(self)) return NULL;
    PyObject *src, *sport, *dst, *dport;
    if (!PyArg_ParseTuple(args, "OOOO", &src, &sport, &dst, &dport)) return NULL;
    Key k;
    if (key_from_py(src, sport, dst, dport, &k) < 0) Py_RETURN_FALSE;
    Slot *s = slot_find(self, &k);
    if (s == NULL) Py_RETURN_FALSE;
    if (lease_end(self, s->lease) < 0) return NULL;
    Py_RETURN_TRUE;
}

static PyObject *Bypass_sync(Bypass *self, PyObject *Py_UNUSED(ignored))
{
    if (!ready(self)) return NULL;
    if (sync_dirty(self) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *Bypass_revoke_all(Bypass *self, PyObject *Py_UNUSED(ignored))
{
    if (!ready(self)) return NULL;
    for (int32_t i = 0; i < self->capacity && self->nleases > 0; i++)
        if (self->leases[i].used && lease_end(self, i) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *Bypass_stats(Bypass *self, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("{s:i,s:i,s:i,s:K,s:K,s:K,s:K}", "leases", self->nleases, "capacity",
                         self->capacity, "max_leases", self->max_leases, "consumed", self->consumed, "granted",
                         self->granted, "refused", self->refused, "ended", self->ended);
}

static PyObject *Bypass_get_consumed(Bypass *self, void *Py_UNUSED(c))
{
    return PyLong_FromUnsignedLongLong(self->consumed);
}

static PyObject *Bypass_get_leases(Bypass *self, void *Py_UNUSED(c)) { return PyLong_FromLong(self->nleases); }

static PyMethodDef Bypass_methods[] = {
    {"grant", (PyCFunction)Bypass_grant, METH_VARARGS,
     "grant(half, src, sport, dst, dport, next, budget, rev_next, data_ts=inf, "
     "stall_after=inf, chain=None) -> bool\n"
     "Lease the direction (src, sport) -> (dst, dport): consume its in-order segments while "
     "they are shorter than what is left of budget and follow the previous data segment "
     "(data_ts) within stall_after seconds; rev_next < 0: none of the reverse direction's "
     "packets may be consumed. chain: (ctx, pdu_limit, pdv_len, header_ts), the PDVs after the budget "
     "that may be walked too (dicom/pdvchain.py)."},
    {"revoke", (PyCFunction)Bypass_revoke, METH_VARARGS,
     "revoke(src, sport, dst, dport) -> bool: end the lease holding this key (either "
     "direction), writing its state back first."},
    {"sync", (PyCFunction)Bypass_sync, METH_NOARGS, "Write every touched lease back."},
    {"revoke_all", (PyCFunction)Bypass_revoke_all, METH_NOARGS, "End every lease."},
    {"stats", (PyCFunction)Bypass_stats, METH_NOARGS, "Counters, for tests and benchmarks."},
    {NULL},
};

static PyGetSetDef Bypass_getset[] = {
    {"consumed", (getter)Bypass_get_consumed, NULL, "segments consumed without Python", NULL},
    {"leases", (getter)Bypass_get_leases, NULL, "leases currently held", NULL},
    {NULL},
};

static PyTypeObject BypassType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "dicomsniffd._fastpath.Bypass",
    .tp_basicsize = sizeof(Bypass),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Leases of in-order, skipped stream bytes (see the module docstring).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Bypass_init,
    .tp_dealloc = (destructor)Bypass_dealloc,
    .tp_traverse = (traverseproc)Bypass_traverse,
    .tp_clear = (inquiry)Bypass_clear,
    .tp_methods = Bypass_methods,
    .tp_getset = Bypass_getset,
};

/* ------------------------------------------------------------------ decode_batch */

/* Address and port objects of the segments, shared between packets.
 *
 * Every packet of a flow carries the same two addresses and ports; built afresh, each
 * is an allocation and a free, and the flow table's key lookup hashes both addresses
 * (a bytes object caches its hash only once it exists) and compares them byte by byte
 * against the stored key's. Shared, the hash is cached and the comparison is an
 * identity. Addresses: direct-mapped caches, a slot holds the last address that mapped
 * to it, its bytes kept next to the pointer so a probe never touches the object; 2^15
 * slots keep most of 10,000 concurrent clients' addresses (bench_scale: one address per
 * association). 16-bit values (ports, and the TCP window, mostly the same within a
 * flow): one object per value, created when first seen. Held at most: ~1.2 MB of IPv4
 * addresses (IPv6 the same in its own table), ~1.8 MB of ints if every value occurs.
 * Bytes and ints are immutable: a shared object is equal to a fresh one in every use.
 * Measured: docs/performance.md, "Short associations (issue 15, fourth session)". */
#define ADDR_BITS 15
#define ADDR_SLOTS (1 << ADDR_BITS)

typedef struct {
    PyObject *obj;
    uint8_t addr[16];
} AddrSlot;

static AddrSlot addr4_slots[ADDR_SLOTS], addr6_slots[ADDR_SLOTS];
static PyObject *u16_objs[1 << 16]; /* ports and TCP windows > 256, by value */

static PyObject *shared_addr(const uint8_t *a, uint8_t alen)
{
    uint64_t x;
    AddrSlot *slot;
    if (alen == 4) {
        uint32_t v;
        memcpy(&v, a, 4);
        x = v;
        slot = &addr4_slots[(x * 0x9E3779B97F4A7C15ull) >> (64 - ADDR_BITS)];
    } else if (alen == 16) {
        uint64_t w[2];
        memcpy(w, a, 16);
        x = w[0] ^ (w[1] * 0xC2B2AE3D27D4EB4Full);
        slot = &addr6_slots[(x * 0x9E3779B97F4A7C15ull) >> (64 - ADDR_BITS)];
    } else {
        return PyBytes_FromStringAndSize((const char *)a, alen);
    }
    if (slot->obj != NULL && memcmp(slot->addr, a, alen) == 0) {
        Py_INCREF(slot->obj);
        return slot->obj;
    }
    PyObject *o = PyBytes_FromStringAndSize((const char *)a, alen);
    if (o == NULL) return NULL;
    Py_INCREF(o);
    Py_XSETREF(slot->obj, o);
    memcpy(slot->addr, a, alen);
    return o;
}

static PyObject *shared_u16(uint16_t v)
{
    if (v <= 256) return PyLong_FromLong(v); /* CPython's own small ints */
    PyObject *o = u16_objs[v];
    if (o == NULL) {
        o = PyLong_FromLong(v);
        if (o == NULL) return NULL;
        u16_objs[v] = o; /* the table's reference, kept */
    }
    Py_INCREF(o);
    return o;
}

/* A segment's eleven fields (flows.FlowTable.segment's arguments after ts, in the order of
 * a decode.Segment tuple) as new references in items[0..10]: passed to emit as call
 * arguments, not packed into a tuple the flow table unpacks again (one tuple allocation,
 * its GC tracking and its unpacking less per packet). 0, or -1 with nothing held. */
static int segment_fields(const uint8_t *f, const Parsed *p, PyObject **items)
{
    Py_ssize_t seg_len = p->end - p->start;
    items[0] = shared_addr(p->src, p->alen);
    items[1] = shared_u16(p->sport);
    items[2] = shared_addr(p->dst, p->alen);
    items[3] = shared_u16(p->dport);
    items[4] = PyLong_FromUnsignedLong(p->seq);
    items[5] = PyLong_FromUnsignedLong(p->ack);
    items[6] = PyLong_FromLong(p->flags);
    items[7] = shared_u16(p->window); /* a flow's window is mostly the same too */
    items[8] = PyBytes_FromStringAndSize((const char *)f + p->start, seg_len);
    items[9] = PyLong_FromSsize_t(seg_len);
    items[10] = PyLong_FromLong(p->ip_id);
    for (int i = 0; i < SEG_FIELDS; i++) {
        if (items[i] == NULL) {
            for (int j = 0; j < SEG_FIELDS; j++) Py_CLEAR(items[j]);
            return -1;
        }
    }
    return 0;
}

/* The key of a Segment tuple the general path returned (to end a lease of its flow). */
static int key_of_segment(PyObject *seg, Key *k)
{
    if (!PyTuple_Check(seg) || PyTuple_GET_SIZE(seg) < 4) return -1;
    return key_from_py(PyTuple_GET_ITEM(seg, 0), PyTuple_GET_ITEM(seg, 1),
                       PyTuple_GET_ITEM(seg, 2), PyTuple_GET_ITEM(seg, 3), k);
}

/* emit(ts, *fields): fields[0..10] are borrowed. args[0] is scratch space
 * (PY_VECTORCALL_ARGUMENTS_OFFSET): a bound method such as FlowTable.segment puts its
 * self there instead of copying the 12 arguments into a new array. */
static PyObject *call_emit(PyObject *emit, double ts, PyObject *const *fields)
{
    PyObject *args[2 + SEG_FIELDS];
    PyObject *pts = PyFloat_FromDouble(ts);
    if (pts == NULL) return NULL;
    args[0] = NULL;
    args[1] = pts;
    memcpy(args + 2, fields, SEG_FIELDS * sizeof(PyObject *));
    PyObject *r = PyObject_Vectorcall(emit, args + 1, (1 + SEG_FIELDS) | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                      NULL);
    Py_DECREF(pts);
    return r;
}

/* owner.mss as a long (>= 0), or -1 with an exception set. */
static long owner_mss(PyObject *owner)
{
    PyObject *v = PyObject_GetAttrString(owner, "mss");
    if (v == NULL) return -1;
    long m = PyLong_AsLong(v);
    Py_DECREF(v);
    if (m < 0 && !PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "mss is negative");
    return PyErr_Occurred() ? -1 : m;
}

static int set_owner_mss(PyObject *owner, long mss)
{
    PyObject *v = PyLong_FromLong(mss);
    if (v == NULL) return -1;
    int r = PyObject_SetAttrString(owner, "mss", v);
    Py_DECREF(v);
    return r;
}

static PyObject *decode_batch(PyObject *Py_UNUSED(module), PyObject *args)
{
    int link;
    PyObject *general, *emit, *owner = Py_None;
    Py_buffer buf, meta;
    if (!PyArg_ParseTuple(args, "iOy*y*O|O", &link, &general, &buf, &meta, &emit, &owner))
        return NULL;
    if (link < LINK_ETHERNET || link > LINK_SLL2) {
        PyBuffer_Release(&buf);
        PyBuffer_Release(&meta);
        return PyErr_Format(PyExc_ValueError, "unknown link kind %d", link);
    }
    Bypass *bp = Py_IS_TYPE(emit, &BypassType) ? (Bypass *)emit : NULL;
    PyObject *target = bp ? bp->segment : emit;
    if (bp && (target == NULL || bp->slots == NULL)) {
        PyBuffer_Release(&buf);
        PyBuffer_Release(&meta);
        PyErr_SetString(PyExc_RuntimeError, "Bypass is not initialised");
        return NULL;
    }
    Py_XINCREF(target);
    const uint8_t *data = buf.buf;
    Py_ssize_t blen = buf.len;
    const uint8_t *rec = meta.buf;
    Py_ssize_t nrec = meta.len / 16;
    long long packets = 0, nbytes = 0, super_packets = 0;
    double ts = 0.0;
    int failed = 0;
    /* owner.mss: the largest MSS a SYN announced (the Decoder). Read once, written back
     * before the general path runs (it counts super packets too) and at the end; read
     * again after it, which may have seen a SYN. */
    long mss = MSS, shared = MSS;
    if (owner != Py_None && (shared = mss = owner_mss(owner)) < 0) failed = 1;

    for (Py_ssize_t i = 0; i < nrec && !failed; i++) {
        uint32_t w[4]; /* sec, usec, offset, caplen; memcpy: the buffer may be unaligned */
        memcpy(w, rec + 16 * i, sizeof(w));
        uint32_t sec = w[0], usec = w[1];
        Py_ssize_t off = w[2], caplen = w[3];
        ts = (double)sec + (double)usec * 1e-6;
        packets++;
        nbytes += caplen;
        /* As Python slicing would: never read past the batch buffer. */
        if (off > blen) off = blen;
        if (caplen > blen - off) caplen = blen - off;
        const uint8_t *f = data + off;
        Parsed p;
        if (parse_clean(f, caplen, link, &p)) {
            if (p.flags & TCP_SYN) {
                long m = syn_mss(f + p.opts, p.start - p.opts);
                if (m > mss) mss = m;
            }
            if (p.end - p.start > mss) super_packets++;
            if (bp && bp->nleases) {
                Key k;
                key_set(&k, p.alen, p.src, p.sport, p.dst, p.dport);
                Slot *s = slot_find(bp, &k);
                if (s != NULL) {
                    if (try_consume(bp, s, &p, f + p.start, ts)) {
                        bp->consumed++;
                        continue;
                    }
                    if (lease_end(bp, s->lease) < 0) {
                        failed = 1;
                        break;
                    }
                }
            }
            PyObject *fields[SEG_FIELDS];
            if (segment_fields(f, &p, fields) < 0) {
                failed = 1;
                break;
            }
            PyObject *r = call_emit(target, ts, fields);
            for (int j = 0; j < SEG_FIELDS; j++) Py_DECREF(fields[j]);
            if (r == NULL) {
                failed = 1;
                break;
            }
            Py_DECREF(r);
        } else {
            PyObject *frame = PyBytes_FromStringAndSize((const char *)f, caplen);
            if (frame == NULL) {
                failed = 1;
                break;
            }
            if (owner != Py_None && mss != shared && set_owner_mss(owner, mss) < 0) {
                Py_DECREF(frame);
                failed = 1;
                break;
            }
            PyObject *seg = PyObject_CallOneArg(general, frame);
            Py_DECREF(frame);
            if (seg == NULL) {
                failed = 1;
                break;
            }
            if (owner != Py_None && (shared = mss = owner_mss(owner)) < 0) {
                Py_DECREF(seg);
                failed = 1;
                break;
            }
            if (seg == Py_None) {
                Py_DECREF(seg);
                continue;
            }
            if (!PyTuple_CheckExact(seg) || PyTuple_GET_SIZE(seg) != SEG_FIELDS) {
                Py_DECREF(seg);
                PyErr_SetString(PyExc_TypeError, "the general path must return a Segment or None");
                failed = 1;
                break;
            }
            if (bp && bp->nleases) {
                Key k;
                if (key_of_segment(seg, &k) == 0 && end_lease_for(bp, &k) < 0) {
                    Py_DECREF(seg);
                    failed = 1;
                    break;
                }
            }
            PyObject *r = call_emit(target, ts, &PyTuple_GET_ITEM(seg, 0));
            Py_DECREF(seg);
            if (r == NULL) {
                failed = 1;
                break;
            }
            Py_DECREF(r);
        }
    }
    Py_XDECREF(target);
    PyBuffer_Release(&buf);
    PyBuffer_Release(&meta);
    if (!failed && owner != Py_None && mss != shared && set_owner_mss(owner, mss) < 0)
        failed = 1;
    if (bp) {
        if (failed) {
            /* keep the original exception; still write the leases back */
            PyObject *et, *ev, *tb;
            PyErr_Fetch(&et, &ev, &tb);
            if (sync_dirty(bp) < 0) PyErr_Clear();
            PyErr_Restore(et, ev, tb);
        } else if (bp->sync_each_batch && sync_dirty(bp) < 0) {
            failed = 1;
        }
    }
    if (failed) return NULL;
    return Py_BuildValue("(LLdL)", packets, nbytes, ts, super_packets);
}

/* ------------------------------------------------------------------ classic pcap index
 *
 * index_pcap(): frame the records of a classic pcap file held in memory, for
 * capture/pcapfile.py, which reads the file in large chunks itself instead of through
 * libpcap + pcapy-ng (which copy every packet twice). The records come out packed
 * exactly as pcapy-ng's next_batch packs them (four native uint32: sec, usec, offset,
 * caplen; the frame is buf[offset:offset + caplen]), with libpcap 1.10's rules
 * (sf-pcap.c, pcap_next_packet) for what it does not pass through unchanged:
 *   - nanosecond files: usec = ts_nsec / 1000 (libpcap's SCALE_DOWN, see below);
 *   - caplen > max_caplen (max_snaplen_for_dlt): a record libpcap refuses (CORRUPT);
 *   - snaplen < caplen <= max_caplen: the frame is cut to snaplen, the record still
 *     occupies caplen bytes of the file.
 */
#define PCAP_BATCH_FULL 0 /* max_n records indexed; more may follow */
#define PCAP_NEED_BYTES 1 /* the record at next_pos is not wholly inside buf[:end] */
#define PCAP_CORRUPT 2    /* the record header at next_pos is one libpcap refuses */

static inline uint32_t pcap_u32(const uint8_t *p, int swapped)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return swapped ? __builtin_bswap32(v) : v;
}

static PyObject *index_pcap(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t start, end, max_n;
    int swapped, nsec;
    unsigned long snaplen, max_caplen;
    if (!PyArg_ParseTuple(args, "y*nnnppkk", &buf, &start, &end, &max_n, &swapped, &nsec,
                          &snaplen, &max_caplen))
        return NULL;
    if (end > buf.len) end = buf.len;
    if (start < 0 || start > end || max_n < 0 || buf.len > (Py_ssize_t)UINT32_MAX) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "index_pcap: bad start, end or max_n");
        return NULL;
    }
    /* No more records than 16-byte headers fit in the range. */
    if (max_n > (end - start) / 16 + 1) max_n = (end - start) / 16 + 1;
    PyObject *out = PyBytes_FromStringAndSize(NULL, 16 * max_n);
    if (out == NULL) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(out);
    const uint8_t *data = buf.buf;
    Py_ssize_t pos = start, n = 0;
    long long nbytes = 0;
    int status = PCAP_BATCH_FULL;
    while (n < max_n) {
        if (end - pos < 16) {
            status = PCAP_NEED_BYTES;
            break;
        }
        const uint8_t *h = data + pos;
        uint32_t incl = pcap_u32(h + 8, swapped);
        if (incl > max_caplen) {
            status = PCAP_CORRUPT;
            break;
        }
        if ((Py_ssize_t)incl > end - pos - 16) {
            status = PCAP_NEED_BYTES;
            break;
        }
        uint32_t w[4];
        w[0] = pcap_u32(h, swapped);
        w[1] = pcap_u32(h + 4, swapped);
        /* libpcap divides its tv_usec: the file's int32 as is, or, swapped, SWAPLONG's
         * u_int (so a fraction >= 2^31 divides signed in one byte order only). */
        if (nsec) w[1] = swapped ? w[1] / 1000 : (uint32_t)((int32_t)w[1] / 1000);
        w[2] = (uint32_t)(pos + 16);
        w[3] = incl > snaplen ? (uint32_t)snaplen : incl;
        memcpy(o + 16 * n, w, sizeof(w));
        nbytes += w[3];
        pos += 16 + (Py_ssize_t)incl;
        n++;
    }
    if (n == max_n && status == PCAP_BATCH_FULL && end - pos < 16) status = PCAP_NEED_BYTES;
    PyBuffer_Release(&buf);
    if (_PyBytes_Resize(&out, 16 * n) < 0) return NULL;
    return Py_BuildValue("(NnLi)", out, pos, nbytes, status);
}

static PyMethodDef module_methods[] = {
    {"decode_batch", decode_batch, METH_VARARGS,
     "decode_batch(link, general, packet_bytes, packed_records, emit, owner=None) -> "
     "(packets, bytes, last_ts, super_packets)\n"
     "owner: an object whose int attribute mss is the super-packet limit, raised by the "
     "MSS option of every SYN (a Decoder); None: 1460 at the start of each call.\n"
     "link: 0 Ethernet, 1 Linux SLL, 2 SLL2. general(frame) -> Segment | None decodes "
     "every frame that is not a clean TCP/IP shape. emit: a callable(ts, *seg), or a "
     "Bypass (its segment callable receives what it does not consume)."},
    {"index_pcap", index_pcap, METH_VARARGS,
     "index_pcap(buf, start, end, max_n, swapped, nsec, snaplen, max_caplen) -> "
     "(packed_records, next_pos, captured_bytes, status)\n"
     "Frame up to max_n classic pcap records of buf[start:end] as pcapy-ng's next_batch "
     "packs them (offsets into buf). status: 0 max_n indexed, 1 the record at next_pos "
     "needs bytes past end, 2 its header is one libpcap refuses (caplen > max_caplen)."},
    {NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "dicomsniffd._fastpath",
    .m_doc = "The compiled hot path: batch decode and the flow table's bypass (see _fastpath.c).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__fastpath(void)
{
    if (PyType_Ready(&BypassType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL) return NULL;
    Py_INCREF(&BypassType);
    if (PyModule_AddObject(m, "Bypass", (PyObject *)&BypassType) < 0) {
        Py_DECREF(&BypassType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
