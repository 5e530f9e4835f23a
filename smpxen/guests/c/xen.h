/*
 * xen.h -- the few bits of the Xen 2.0 x86_32 guest interface this guest uses,
 * written as a guest OS carries them (values from Xen 2.0.0's
 * xen/include/public/xen.h, arch-x86_32.h and io/domain_controller.h).
 *
 * Hypercalls: `int $0x82`, EAX = hypercall number, EBX, ECX, EDX, ESI, EDI =
 * arguments 1..5, result in EAX. Xen's C handlers may modify their stack
 * arguments, so every argument register is treated as clobbered.
 */
#ifndef SMPXEN_GUEST_XEN_H
#define SMPXEN_GUEST_XEN_H

#ifndef __ASSEMBLER__
typedef unsigned char      u8;
typedef unsigned short     u16;
typedef unsigned int       u32;
typedef unsigned long long u64;
typedef unsigned long      memory_t;     /* 32 bits on x86_32 */

#define PACKED __attribute__((packed))
#endif

/* Hypercall numbers (xen.h). */
#define __HYPERVISOR_set_trap_table                 0
#define __HYPERVISOR_mmu_update                     1
#define __HYPERVISOR_set_gdt                        2
#define __HYPERVISOR_stack_switch                   3
#define __HYPERVISOR_set_callbacks                  4
#define __HYPERVISOR_fpu_taskswitch                 5
#define __HYPERVISOR_sched_op                       6
#define __HYPERVISOR_dom0_op                        7
#define __HYPERVISOR_set_debugreg                   8
#define __HYPERVISOR_get_debugreg                   9
#define __HYPERVISOR_update_descriptor             10
#define __HYPERVISOR_set_fast_trap                 11
#define __HYPERVISOR_dom_mem_op                    12
#define __HYPERVISOR_multicall                     13
#define __HYPERVISOR_update_va_mapping             14
#define __HYPERVISOR_set_timer_op                  15
#define __HYPERVISOR_event_channel_op              16
#define __HYPERVISOR_xen_version                   17
#define __HYPERVISOR_console_io                    18
#define __HYPERVISOR_physdev_op                    19
#define __HYPERVISOR_grant_table_op                20
#define __HYPERVISOR_vm_assist                     21
#define __HYPERVISOR_update_va_mapping_otherdomain 22

/* sched_op: low 8 bits command, bits 8..15 shutdown reason. */
#define SCHEDOP_yield        0
#define SCHEDOP_block        1
#define SCHEDOP_shutdown     2
#define SCHEDOP_cmdmask    255
#define SCHEDOP_reasonshift  8

/* Shutdown reasons (io/domain_controller.h). */
#define SHUTDOWN_poweroff    0
#define SHUTDOWN_reboot      1
#define SHUTDOWN_suspend     2

/* console_io commands. */
#define CONSOLEIO_write      0
#define CONSOLEIO_read       1

/* Flat segments Xen provides (arch-x86_32.h). */
#define FLAT_RING1_CS        0x0819
#define FLAT_RING1_DS        0x0821
#define FLAT_RING3_CS        0x082b
#define FLAT_RING3_DS        0x0833
#define HYPERVISOR_VIRT_START 0xFC000000

#ifndef __ASSEMBLER__
/* ---- shared_info_t (xen.h, MAX_VIRT_CPUS 1), 344 bytes -------------------- */
#define MAX_VIRT_CPUS 1
#define NR_EVENT_CHANNELS 1024

typedef struct {
    u8 evtchn_upcall_pending;
    u8 evtchn_upcall_mask;
    u8 pad0, pad1;
} PACKED vcpu_info_t;

typedef struct {
    u64 mfn_to_pfn_start;
    u64 pfn_to_mfn_frame_list;
} PACKED arch_shared_info_t;

typedef struct {
    vcpu_info_t vcpu_data[MAX_VIRT_CPUS];   /*   0 */
    u32 evtchn_pending[32];                 /*   4 */
    u32 evtchn_pending_sel;                 /* 132 */
    u32 evtchn_mask[32];                    /* 136 */
    u64 cpu_freq;                           /* 264: Hz */
    u32 time_version1;                      /* 272 */
    u32 time_version2;                      /* 276 */
    u64 tsc_timestamp;                      /* 280 */
    u64 system_time;                        /* 288: ns since boot */
    u32 wc_sec;                             /* 296 */
    u32 wc_usec;                            /* 300 */
    u64 domain_time;                        /* 304 */
    u64 wall_timeout;                       /* 312 */
    u64 domain_timeout;                     /* 320 */
    arch_shared_info_t arch;                /* 328 */
} PACKED shared_info_t;                     /* 344 */

/* ---- start_info_t (xen.h), 320 bytes; its VA arrives in ESI --------------- */
#define MAX_CMDLINE 256
#define _MEMORY_PADDING(_X) u32 __pad_##_X

typedef struct {
    memory_t nr_pages;          /*  0: total pages allocated to this domain */
    _MEMORY_PADDING(A);
    memory_t shared_info;       /*  8: MACHINE address of shared info */
    _MEMORY_PADDING(B);
    u32      flags;             /* 16: SIF_* */
    u16      domain_controller_evtchn; /* 20 */
    u16      __pad;
    memory_t pt_base;           /* 24: VIRTUAL address of page directory */
    _MEMORY_PADDING(C);
    memory_t nr_pt_frames;      /* 32 */
    _MEMORY_PADDING(D);
    memory_t mfn_list;          /* 40: VIRTUAL address of page-frame list */
    _MEMORY_PADDING(E);
    memory_t mod_start;         /* 48: VIRTUAL address of pre-loaded module */
    _MEMORY_PADDING(F);
    memory_t mod_len;           /* 56 */
    _MEMORY_PADDING(G);
    u8 cmd_line[MAX_CMDLINE];   /* 64 */
} PACKED start_info_t;          /* 320 */

#define SIF_PRIVILEGED    (1<<0)
#define SIF_INITDOMAIN    (1<<1)
#define SIF_BLK_BE_DOMAIN (1<<4)
#define SIF_NET_BE_DOMAIN (1<<5)

#define XEN_OFFSETOF(t, m) __builtin_offsetof(t, m)
_Static_assert(sizeof(shared_info_t) == 344, "shared_info_t size");
_Static_assert(XEN_OFFSETOF(shared_info_t, evtchn_pending_sel) == 132, "sel");
_Static_assert(XEN_OFFSETOF(shared_info_t, evtchn_mask) == 136, "mask");
_Static_assert(XEN_OFFSETOF(shared_info_t, cpu_freq) == 264, "cpu_freq");
_Static_assert(XEN_OFFSETOF(shared_info_t, tsc_timestamp) == 280, "tsc");
_Static_assert(XEN_OFFSETOF(shared_info_t, wall_timeout) == 312, "wall_timeout");
_Static_assert(XEN_OFFSETOF(shared_info_t, arch) == 328, "arch");
_Static_assert(sizeof(start_info_t) == 320, "start_info_t size");
_Static_assert(XEN_OFFSETOF(start_info_t, flags) == 16, "flags");
_Static_assert(XEN_OFFSETOF(start_info_t, pt_base) == 24, "pt_base");
_Static_assert(XEN_OFFSETOF(start_info_t, mod_len) == 56, "mod_len");
_Static_assert(XEN_OFFSETOF(start_info_t, cmd_line) == 64, "cmd_line");

/* ---- hypercall wrappers -------------------------------------------------- */
#define TRAP_INSTR "int $0x82"

static inline long
_hypercall5(unsigned long op, unsigned long a1, unsigned long a2,
            unsigned long a3, unsigned long a4, unsigned long a5)
{
    long ret;
    __asm__ __volatile__ (
        TRAP_INSTR
        : "=a" (ret), "+b" (a1), "+c" (a2), "+d" (a3), "+S" (a4), "+D" (a5)
        : "0" (op)
        : "memory" );
    return ret;
}

#define _hypercall0(op)                 _hypercall5((op), 0, 0, 0, 0, 0)
#define _hypercall1(op, a)              _hypercall5((op), (unsigned long)(a), 0, 0, 0, 0)
#define _hypercall2(op, a, b)           _hypercall5((op), (unsigned long)(a), \
                                            (unsigned long)(b), 0, 0, 0)
#define _hypercall3(op, a, b, c)        _hypercall5((op), (unsigned long)(a), \
                                            (unsigned long)(b), (unsigned long)(c), 0, 0)

static inline long HYPERVISOR_console_io(int cmd, int count, const char *buf)
{
    return _hypercall3(__HYPERVISOR_console_io, cmd, count, buf);
}

static inline long HYPERVISOR_sched_op(unsigned long op)
{
    return _hypercall1(__HYPERVISOR_sched_op, op);
}

static inline long HYPERVISOR_yield(void)
{
    return HYPERVISOR_sched_op(SCHEDOP_yield);
}

static inline long HYPERVISOR_block(void)
{
    return HYPERVISOR_sched_op(SCHEDOP_block);
}

static inline long HYPERVISOR_shutdown(unsigned int reason)
{
    return HYPERVISOR_sched_op(SCHEDOP_shutdown |
                               ((reason & 0xff) << SCHEDOP_reasonshift));
}

static inline long HYPERVISOR_xen_version(int cmd)
{
    return _hypercall1(__HYPERVISOR_xen_version, cmd);
}

#endif /* !__ASSEMBLER__ */
#endif /* SMPXEN_GUEST_XEN_H */
