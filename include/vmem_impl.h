/*
 * vmem_impl.h - the layout of an arena, for vmem.h only: NOT part of the
 * API. vmem.h includes it so that callers can embed a Vmem by value
 * (vmem_init needs no allocator); the members after `stat` are the
 * library's own and change between releases without notice. Include
 * vmem.h, never this file.
 */
#ifndef VMEM_IMPL_H
#define VMEM_IMPL_H

#ifndef VMEM_H
#error "include vmem.h, not vmem_impl.h"
#endif

/*
 * Free segments sit on size-class freelists: each power-of-two range of
 * sizes [2^n, 2^(n+1)) is split into VMEM_FREELIST_SPLIT equal classes
 * (sizes below VMEM_FREELIST_SPLIT get a class each), so instant-fit picks
 * within 1/VMEM_FREELIST_SPLIT of the request instead of within 2x.
 */
#define VMEM_FREELIST_SPLIT_SHIFT 2
#define VMEM_FREELIST_SPLIT (1 << VMEM_FREELIST_SPLIT_SHIFT)
#define VMEM_FREELISTS \
    ((sizeof(size_t) * 8 - VMEM_FREELIST_SPLIT_SHIFT + 1) * VMEM_FREELIST_SPLIT)
#define VMEM_FREEMAP_WORDS ((VMEM_FREELISTS + sizeof(size_t) * 8 - 1) / (sizeof(size_t) * 8))
/* A table of the allocated-segment hash (src/vmem_hash.c), a
 * power of two of chain heads; and the heads embedded in an arena, used
 * until it grows a table. */
typedef struct vmem_hash_table {
    struct vmem_tag **ht_bucket; /* NULL: no table */
    unsigned ht_shift;           /* 64 - log2(buckets): a key's bucket is its hash >> ht_shift */
} VmemHashTable;
#define VMEM_HASH_EMBEDDED 16
/* Best-fit's exact-size lists (src/vmem_tree.c): with a size index, a free
 * segment of 1 to VMEM_EXACT_SIZES quanta is on the list of its size. */
#define VMEM_EXACT_SIZES 64
#define VMEM_NAME_MAX 64

/* An arena (Vmem): the members up to `stat` are the original header's,
 * readable as vmem.h says; the rest is private. */
struct vmem {
    char name[VMEM_NAME_MAX];  /* descriptive name, for reports and dumps */
    void *base;                /* start of the initial span */
    size_t size;               /* size of the initial span */
    size_t quantum;            /* unit of currency, a power of two */
    VmemAlloc *alloc;          /* import function, or NULL */
    VmemFree *free;            /* give-back function, or NULL */
    struct vmem *source;       /* arena spans are imported from, or NULL */
    size_t qcache_max;         /* largest size served by quantum caches */
    int vmflag;                /* flags given at creation */
    VmemStat stat;

    uint32_t vm_magic;         /* VMEM_MAGIC while the arena is usable */
    uint32_t vm_state;         /* internal state bits */
    VmemLock vm_lock;
    int vm_lock_held;          /* debug builds: set while vm_lock is held */
    VmemCond vm_cv;                 /* VM_SLEEP allocations wait here */
    size_t vm_waiters;              /* how many */
    unsigned vm_quantum_shift; /* log2(quantum) */
    VmemXImport *vm_ximport;        /* vmem_set_ximport's callback, or NULL */
    size_t vm_import_quantum;       /* vmem_set_import_quantum, or 0: none */
    struct vmem_tag *vm_seg_first;  /* all segments and span markers, by address */
    struct vmem_tag *vm_seg_last;
    struct vmem_tag *vm_span_first; /* span markers, by address */
    struct vmem_tag *vm_freelist[VMEM_FREELISTS];
    size_t vm_freemap[VMEM_FREEMAP_WORDS]; /* bit set: that freelist is not empty */
    struct vmem_tag *vm_free_by_addr; /* free segments, by address (AVL) */
    struct vmem_tag *vm_free_by_size; /* larger free segments, by (size, address) (AVL) */
    uintptr_t vm_rotor;             /* where the next VM_NEXTFIT search starts */
    struct vmem_tag *vm_rotor_tag;  /* the last VM_NEXTFIT segment, or NULL */
    struct vmem_tag *vm_stash;      /* boundary tags reserved for this arena */
    size_t vm_stash_count;
    size_t vm_nsegs;                /* free + allocated segments (not spans) */
    /* Allocated-segment hash (private): while vm_hash_old has a table,
     * its buckets below vm_hash_migrated have moved to vm_hash. */
    VmemHashTable vm_hash;
    VmemHashTable vm_hash_old;
    VmemHashTable vm_hash_retired;  /* to hand back once unlocked */
    size_t vm_hash_migrated;
    size_t vm_hash_count;
    size_t vm_hash_grow_at;         /* counts that want a resize: above, */
    size_t vm_hash_shrink_at;       /* and below (none while one is under way) */
    size_t vm_hash_hint;            /* bytes of the table wanted, for the next call */
    struct vmem_tag *vm_hash_embedded[VMEM_HASH_EMBEDDED];
    struct vmem *vm_next_created;   /* vmem_create() storage free list */
    size_t vm_importers;            /* live arenas importing from this one */
    struct vmem_qcache_state *vm_qcache; /* quantum caches, made on first use */
    size_t vm_qcache_pages;
    size_t vm_qcache_waiters;       /* VM_SLEEP requests draining or asleep (atomic) */
    size_t vm_slab_bytes;           /* of stat.in_use, in quantum-cache slabs */
    size_t vm_slabs_made, vm_slabs_freed; /* of stat.alloc and stat.free */
    /* Best-fit's small free segments, by exact size: last, so that they
     * leave the other members' cache lines as they are. */
    struct vmem_tag *vm_exact[VMEM_EXACT_SIZES]; /* [i] holds segments of i + 1 quanta */
    uint64_t vm_exact_map;          /* bit i set: vm_exact[i] is not empty */
};


#endif /* VMEM_IMPL_H */
