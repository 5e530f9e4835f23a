# fuzz: makes M seeded random hypercalls (command line `seed=N calls=M`, defaults 1
# and 100000), then reports what it did and powers off. Every hypercall number 0..31 (and
# random 32-bit numbers, which Xen masks), with arguments drawn from: pointers to
# its own buffers, the same buffers copied so they cross into an unmapped guard
# page, its read-only page directory, never-mapped addresses, the hypervisor area
# (>= 0xFC000000), boundary values (0, -1, 0x7fffffff, 0x80000000, huge counts),
# random integers, and machine frames: its own (live, free, page tables,
# shared_info), neighbours of its own (other domains' frames, as domains are built
# one after another), random frames, hypervisor frames and frames beyond RAM.
#
# It is a domU that keeps going: it only skips what would kill it for a legitimate
# reason (see README "Hypercall fuzzing"):
#   - sched_op shutdown is never made; a block is preceded by set_timer_op(0, 1)
#     (a timer already due) so it always wakes; in a multicall a block is a yield;
#   - page-table writes (mmu_update, update_va_mapping) never touch the entries
#     mapping its live pages or the guard page after them, never hook its bootstrap
#     L1 into a second L2 slot, and its own L2 changes only in slots 256..511 (the
#     "sandbox", 0x40000000..0x7fffffff) or the refused slots >= 1008;
#   - a raw write (mmu_update to a writable frame, update_descriptor, set_gdt's
#     zapping of frame 0) aimed at one of its live frames, or at its scratch page,
#     goes to the first half of its scratch page (the lists it copies to cross into
#     the guard page lie at the end);
#   - MMUEXT_NEW_BASEPTR never names a frame it may own other than its current L2;
#   - selectors it passes to set_trap_table/set_callbacks are FLAT_RING1_CS with one
#     of its own handlers (or no event callback), or invalid ones (-EPERM). Its trap
#     table sends every vector to fuzz_trap, which counts the trap and goes on with
#     the next call, so the faults it provokes on purpose (the "pokes": `int n`,
#     FS/GS loads with LDT and random selectors, privileged and FPU instructions,
#     ud2, int3, into, #DE, reads of unmapped memory, writes to its read-only page
#     directory, a trip to ring 3 that ends in a trap) do not end the run;
#   - console writes from its own memory print a whole line "fuzz\n".
# Run as Domain-0 with `victim=D protect=A,B,...`, its privileged operations reach
# D, itself and domains that do not exist: any generated id in `protect` becomes D.
# With `trace=N` it prints every call from iteration N on (number, arguments).
# What it generates depends only on the seed: it prints fuzz_hash, an FNV-1a hash of
# every call it made.
# Pointers it passes are one of its scratch buffers (filled so that reading past the
# generated entries stops: mmu_update lists end with a request that always fails),
# addresses it never maps, or (only for calls that cannot hurt it whatever they
# read) its read-only page directory; so the hypervisor never acts on unfiltered data.

.equ HC_SET_TIMER_OP, 15
.equ PROT_MAX, 512               # live pages + guard must fit in half the L1

guest_main:
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    mov edi, key_seed
    call find_key
    jnc have_seed
    mov eax, 1
have_seed:
    mov [seed], eax
    xor eax, 0x9E3779B9
    jnz seed_nonzero
    inc eax
seed_nonzero:
    mov [rng], eax
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    mov edi, key_calls
    call find_key
    jnc have_calls
    mov eax, 100000
have_calls:
    mov [calls], eax
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    mov edi, key_trace
    call find_key
    jc no_trace
    mov [trace_from], eax
no_trace:
    mov esi, [start_info_ptr]
    mov eax, [esi + 16]             # start_info.flags: SIF_PRIVILEGED
    and eax, 1
    mov [privileged], eax
    add esi, START_INFO_CMDLINE
    mov edi, key_victim
    call find_key
    jc no_victim
    mov [victim], eax
no_victim:
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_protect
    mov esi, t_seed
    mov eax, [seed]
    call report
    mov esi, t_calls
    mov eax, [calls]
    call report

    call learn_memory
    test eax, eax
    jz layout_ok
    mov esi, t_layout_error
    call report
    ret
layout_ok:
    call checksum_static
    mov [checksum0], eax
    call install_handlers
    call rdtsc_k
    mov [start_k], eax

fuzz_loop:
    cld
    mov esp, boot_stack_top
    mov byte ptr [in_multicall], 0
    mov eax, [made]
    cmp eax, [calls]
    jae fuzz_finish
    mov eax, [calls]                # a guard: each iteration makes a call unless it
    shl eax, 1                      # traps first
    cmp eax, [iterations]
    jbe fuzz_finish
    inc dword ptr [iterations]
    mov dword ptr [mc_list], 0
    mov ecx, 16
    call rand_below
    test eax, eax
    jnz fl_gen
    call poke
fl_gen:
    call gen_call
    mov ebx, hc_nr                  # FNV-1a over the call: the run's fingerprint
    mov ecx, 6
    mov eax, [call_hash]
fl_hash:
    xor eax, [ebx]
    imul eax, eax, 16777619
    add ebx, 4
    dec ecx
    jnz fl_hash
    mov [call_hash], eax
    mov eax, [trace_from]
    test eax, eax
    jz fl_call
    cmp eax, [iterations]
    ja fl_call
    call trace_call
fl_call:
    call do_call
    call post_call
    jmp fuzz_loop

fuzz_finish:
    call rdtsc_k
    sub eax, [start_k]
    mov [elapsed_k], eax
    cmp dword ptr [privileged], 0
    je ff_report
    call release_victim
ff_report:
    mov esi, newline_only
    call line_puts
    call line_flush
    mov esi, t_iterations
    mov eax, [iterations]
    call report
    mov esi, t_made
    mov eax, [made]
    call report
    mov esi, t_extra
    mov eax, [extra_calls]
    call report
    mov esi, t_mc_entries
    mov eax, [mc_entries]
    call report
    mov esi, t_pokes
    mov eax, [pokes]
    call report
    mov esi, t_traps
    mov eax, [traps]
    call report
    mov esi, t_upcalls
    mov eax, [upcalls]
    call report
    mov esi, t_failsafes
    mov eax, [failsafes]
    call report
    mov esi, t_last_trap0
    mov eax, [last_trap]
    call report
    mov esi, t_last_trap1
    mov eax, [last_trap + 4]
    call report
    mov esi, t_last_trap2
    mov eax, [last_trap + 8]
    call report
    mov esi, t_own_frames_gained
    mov eax, [frames_gained]
    call report
    call checksum_static
    cmp eax, [checksum0]
    sete al
    movzx eax, al
    mov esi, t_intact
    call report
    mov esi, t_hash
    mov eax, [call_hash]
    call report
    mov esi, t_kcycles
    mov eax, [elapsed_k]
    call report
    mov esi, t_done
    mov eax, 1
    call report
    mov eax, SHUTDOWN_poweroff      # not ret: fuzz_loop reset the stack
    call shutdown

# trace_call: with `trace=N` on the command line, every call from iteration N on is
# printed before it is made (to reproduce a finding): number, arguments, and the
# entries of a multicall list in its own buffer.
trace_call:
    mov esi, t_tr_iter
    mov eax, [iterations]
    call report
    mov ebx, hc_nr
    mov ecx, 6
tc_word:
    mov esi, t_tr_word
    mov eax, [ebx]
    call report
    add ebx, 4
    dec ecx
    jnz tc_word
    mov eax, [hc_nr]
    and eax, 31
    cmp eax, 13
    jne tc_done
    mov ebx, [hc_a1]
    mov eax, ebx
    sub eax, mc_buf
    cmp eax, 256
    jae tc_done
    mov ecx, [mc_k]
    shl ecx, 3
tc_entry:
    mov esi, t_tr_entry
    mov eax, [ebx]
    call report
    add ebx, 4
    dec ecx
    jnz tc_entry
tc_done:
    ret

# ---- exceptions and events --------------------------------------------------------
# Every exception comes here (same ring: EIP CS EFLAGS [error code] on our stack):
# count it and go on with the next call.
fuzz_trap:
    mov ax, 0x0821                  # from ring 3 the data selectors are ring 3's
    mov ds, ax
    mov es, ax
    inc dword ptr [traps]
    mov eax, [esp]
    mov [last_trap], eax
    mov eax, [esp + 4]
    mov [last_trap + 4], eax
    mov eax, [esp + 8]
    mov [last_trap + 8], eax
    jmp fuzz_loop

fuzz_failsafe:
    mov ax, 0x0821
    mov ds, ax
    mov es, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    inc dword ptr [failsafes]
    jmp fuzz_loop

# `int n` for a vector poke picks: the byte after 0xCD is rewritten (outside the
# checksummed code)
poke_int_stub:
    int 0x40
    ret

# Event upcall: Xen masked upcalls on delivery; leave them masked (the next
# SCHEDOP_block unmasks them) and return.
fuzz_event:
    inc dword ptr [upcalls]
    iretd

# install_handlers: every vector -> fuzz_trap (DPL 1: `int n` from ring 1 reaches
# it), the event and failsafe callbacks. These calls are counted in extra_calls.
install_handlers:
    mov edi, trap_buf
    xor ecx, ecx
ih_entry:
    mov [edi], cl
    mov byte ptr [edi + 1], 1
    mov word ptr [edi + 2], 0x0819
    mov dword ptr [edi + 4], fuzz_trap
    add edi, 8
    inc ecx
    cmp ecx, 256
    jb ih_entry
    mov dword ptr [edi], 0
    mov dword ptr [edi + 4], 0
    mov eax, 0
    mov ebx, trap_buf
    int 0x82
    mov eax, 4
    mov ebx, 0x0819
    mov ecx, fuzz_event
    mov edx, 0x0819
    mov esi, fuzz_failsafe
    int 0x82
    add dword ptr [extra_calls], 2
    ret

# ---- pokes: not hypercalls, but what they configure (trap table, fast trap, TS,
# LDT, GDT) is used here, on the hypervisor's trap, bounce and LDT-fault paths.
# Most of them fault into fuzz_trap.
poke:
    inc dword ptr [pokes]
    mov ecx, 10
    call rand_below
    jmp dword ptr [poke_table + eax * 4]
# To ring 3 (its own pages are user pages) through an iret, with its stack for
# bounces set first (stack_switch, counted in extra_calls), then one of: `int n`,
# a hypercall (#GP from ring 3), the fast-trap vector, hlt, a read of the hypervisor
# area; and a hypercall after it, so it always traps back to ring 1.
poke_ring3:
    mov eax, 3                      # stack_switch(FLAT_RING1_DS, its stack)
    mov ebx, 0x0821
    mov ecx, boot_stack_top
    int 0x82
    inc dword ptr [extra_calls]
    mov ax, 0x0833
    mov ds, ax
    mov es, ax
    mov eax, 0x0833
    push eax                        # SS
    mov eax, ring3_stack_top
    push eax                        # ESP
    pushfd
    mov eax, 0x082B
    push eax                        # CS
    mov eax, ring3_code
    push eax                        # EIP
    iretd
ring3_code:
    mov ecx, 5
    call rand_below
    test eax, eax
    jz r3_int
    cmp eax, 2
    jb r3_hypercall
    je r3_fast
    cmp eax, 3
    je r3_hlt
    mov eax, [0xFC000000]
    jmp r3_hypercall
r3_int:
    call poke_int
    jmp r3_hypercall
r3_fast:
    int 0x80
    jmp r3_hypercall
r3_hlt:
    hlt
r3_hypercall:
    mov eax, 17
    xor ebx, ebx
    int 0x82
    jmp r3_hypercall
poke_seg:
    call pick_selector
    mov ebx, eax
    call rand
    test al, 1
    jz poke_gs
    mov fs, bx
    ret
poke_gs:
    mov gs, bx
    ret
poke_int:
    mov ecx, 256
    call rand_below
    cmp al, 0x82                    # a hypercall with whatever is in the registers
    jne poke_int_go
    inc eax
poke_int_go:
    mov [poke_int_stub + 1], al
    jmp poke_int_stub
poke_priv:
    mov ecx, 4
    call rand_below
    test eax, eax
    jz poke_hlt
    cmp eax, 2
    jb poke_cli
    je poke_cr3
    mov dr7, eax
    ret
poke_hlt:
    hlt
    ret
poke_cli:
    cli
    ret
poke_cr3:
    mov eax, [l2_mfn]
    shl eax, 12
    mov cr3, eax
    ret
poke_fpu:
    fnop
    ret
poke_read:
    mov ecx, 4
    call rand_below
    test eax, eax
    jz poke_read_tail
    cmp eax, 2
    jb poke_read_sandbox
    call pick_unmapped
    jmp poke_read_go
poke_read_tail:
    call px_tail
    shl eax, 12
    add eax, 0xC0000000
    jmp poke_read_go
poke_read_sandbox:
    mov ecx, 0x40000000
    call rand_below
    add eax, 0x40000000
poke_read_go:
    mov eax, [eax]
    ret
poke_write_ro:
    call rand
    and eax, 0xFFC
    add eax, [pt_base_va]
    mov edx, [eax]
    mov [eax], edx                  # the same value: read-only, so it faults
    ret
poke_exc:
    mov ecx, 4
    call rand_below
    test eax, eax
    jz poke_ud2
    cmp eax, 2
    jb poke_int3
    je poke_div
    mov al, 0x7F                    # OF set, then into
    add al, 1
    into
    ret
poke_ud2:
    ud2
    ret
poke_int3:
    int3
    ret
poke_div:
    xor edx, edx
    xor ecx, ecx
    div ecx
    ret

# pick_selector -> EAX: for FS/GS: null, flat ones, LDT selectors, or random
pick_selector:
    mov ecx, 8
    call rand_below
    cmp eax, 4
    jb ps_table
    cmp eax, 7
    je rand
    mov ecx, 16
    call rand_below
    shl eax, 3
    or eax, 5                       # LDT, RPL 1
    ret
ps_table:
    mov eax, [sel_table + eax * 4]
    ret

# ---- a privileged fuzzer ----------------------------------------------------------
# As Domain-0 it may act on other domains: only on its `victim=D` (which it may
# hurt), itself and domains that do not exist; every domain id it generates that is
# in `protect=A,B,..` (the bystanders) becomes the victim.

# parse_protect(ESI = command line): protect_ids[], protect_n
parse_protect:
    cmp byte ptr [esi], 0
    je pp_none
    xor ecx, ecx
pp_key:
    mov al, [key_protect + ecx]
    test al, al
    jz pp_list
    cmp al, [esi + ecx]
    jne pp_next_char
    inc ecx
    jmp pp_key
pp_next_char:
    inc esi
    jmp parse_protect
pp_list:
    add esi, ecx
pp_number:
    xor eax, eax
pp_digit:
    movzx edx, byte ptr [esi]
    sub edx, 0x30
    cmp edx, 9
    ja pp_end_number
    imul eax, eax, 10
    add eax, edx
    inc esi
    jmp pp_digit
pp_end_number:
    mov ecx, [protect_n]
    cmp ecx, 8
    jae pp_none
    mov [protect_ids + ecx * 4], eax
    inc dword ptr [protect_n]
    cmp byte ptr [esi], 0x2C         # ','
    jne pp_none
    inc esi
    jmp pp_number
pp_none:
    ret

# filter_domid(EAX = domain id) -> EAX: a protected one becomes the victim (only
# when privileged: a domU's ids are refused anyway). Clobbers ECX, EDX.
filter_domid:
    cmp dword ptr [privileged], 0
    je fd_done
    mov edx, eax
    and edx, 0xFFFF
    xor ecx, ecx
fd_check:
    cmp ecx, [protect_n]
    jae fd_done
    cmp edx, [protect_ids + ecx * 4]
    je fd_victim
    inc ecx
    jmp fd_check
fd_victim:
    mov eax, [victim]
fd_done:
    ret

# release_victim: unpause it (pausing is a flag, DF_CTRLPAUSE, as in Xen 2.0) and
# put the context-switch allowance back to BVT's 5 ms, so the machine can finish.
release_victim:
    mov edi, dom0_buf
    mov dword ptr [edi], 11          # DOM0_UNPAUSEDOMAIN
    mov dword ptr [edi + 4], 0xAAAA0019
    mov eax, [victim]
    mov [edi + 8], eax
    mov eax, 7
    mov ebx, edi
    int 0x82
    mov edi, dom0_buf
    mov dword ptr [edi], 6           # DOM0_SCHEDCTL: BVT, PUT, ctx_allow 5 ms
    mov dword ptr [edi + 8], 0
    mov dword ptr [edi + 12], 0
    mov dword ptr [edi + 16], 5000000
    mov eax, 7
    mov ebx, edi
    int 0x82
    add dword ptr [extra_calls], 2
    ret

# ---- what it knows about its memory -------------------------------------------------
# learn_memory -> EAX = 0, or 1 if the layout is not one it handles (more than 4 MiB,
# more than one bootstrap L1, or a bootstrap region over half the L1).
learn_memory:
    mov esi, [start_info_ptr]
    mov eax, [esi + START_INFO_NR_PAGES]
    mov [nr_pages], eax
    cmp eax, 1024
    ja lm_bad
    mov eax, [esi + 40]
    mov [mfn_list], eax
    mov eax, [esi + START_INFO_SHARED_INFO]
    shr eax, 12
    mov [shared_mfn], eax
    cmp dword ptr [esi + 32], 2
    jne lm_bad
    mov eax, [esi + 24]
    mov [pt_base_va], eax
    call pt_base_pfn
    mov ebx, eax
    call pfn_to_mfn
    mov [l2_mfn], eax
    lea eax, [ebx + 1]
    call pfn_to_mfn
    mov [l1_mfn], eax
    # live pages: image .. start_info, then the builder's stack page (scratch)
    mov eax, [start_info_ptr]
    lea edx, [eax + 4096]
    mov [scratch_va], edx
    lea edx, [eax + 8192]
    mov [stack_end], edx
    sub eax, 0xC0000000
    shr eax, 12
    mov [scratch_pfn], eax
    inc dword ptr [scratch_pfn]
    add eax, 2
    mov [live_pages], eax
    inc eax
    mov [prot_pages], eax
    cmp eax, PROT_MAX
    ja lm_bad
    cmp eax, [nr_pages]
    jae lm_bad
    mov eax, [scratch_pfn]
    call pfn_to_mfn
    mov [scratch_mfn], eax
    mov dword ptr [own_min], 0xFFFFFFFF
    mov dword ptr [own_max], 0
    xor ecx, ecx
lm_frame:
    mov eax, ecx
    call pfn_to_mfn
    cmp eax, 0xFFFFF
    ja lm_bad
    bts dword ptr [own_bits], eax
    cmp eax, [own_min]
    jae lm_not_min
    mov [own_min], eax
lm_not_min:
    cmp eax, [own_max]
    jbe lm_not_max
    mov [own_max], eax
lm_not_max:
    cmp ecx, [live_pages]
    jae lm_next
    cmp eax, [scratch_mfn]
    je lm_next
    bts dword ptr [live_bits], eax
lm_next:
    inc ecx
    cmp ecx, [nr_pages]
    jb lm_frame
    mov eax, [shared_mfn]
    cmp eax, 0xFFFFF
    ja lm_bad
    bts dword ptr [own_bits], eax
    bts dword ptr [live_bits], eax
    xor eax, eax
    ret
lm_bad:
    mov eax, 1
    ret

# checksum_static -> EAX: over this guest's code, its pfn->mfn list and start_info,
# which nothing it asks for may change.
checksum_static:
    xor eax, eax
    mov esi, fuzz_code_start
    mov ecx, fuzz_code_end
    sub ecx, esi
    shr ecx, 2
    call cs_add
    mov esi, [mfn_list]
    mov ecx, [nr_pages]
    call cs_add
    mov esi, [start_info_ptr]
    mov ecx, 80
cs_add:
    test ecx, ecx
    jz cs_done
cs_word:
    rol eax, 5
    add eax, [esi]
    add esi, 4
    dec ecx
    jnz cs_word
cs_done:
    ret

# find_key(ESI = string, EDI = "key=") -> EAX = the number after the key, CF clear;
# CF set if the key is missing.
find_key:
    push ebx
    push ecx
    push esi
fk_outer:
    cmp byte ptr [esi], 0
    je fk_missing
    xor ecx, ecx
fk_cmp:
    mov bl, [edi + ecx]
    test bl, bl
    jz fk_found
    cmp bl, [esi + ecx]
    jne fk_next
    inc ecx
    jmp fk_cmp
fk_next:
    inc esi
    jmp fk_outer
fk_found:
    add esi, ecx
    call parse_uint
    clc
    jmp fk_out
fk_missing:
    stc
fk_out:
    pop esi
    pop ecx
    pop ebx
    ret

fuzz_code_start:

# ---- making the call ----------------------------------------------------------------
do_call:
    mov eax, [hc_nr]
    mov ebx, [hc_a1]
    mov ecx, [hc_a2]
    mov edx, [hc_a3]
    mov esi, [hc_a4]
    mov edi, [hc_a5]
    int 0x82
    mov [hc_result], eax
    inc dword ptr [made]
    ret

# post_call: frames an increase_reservation gave us become "own" (so NEW_BASEPTR
# never switches to one of them).
post_call:
    mov eax, [hc_nr]
    and eax, 31
    cmp eax, 13
    je pc_multicall
    cmp eax, 12
    jne pc_done
    mov eax, [hc_a1]
    mov ebx, [hc_a2]
    mov ecx, [hc_result]
    jmp track_increase
pc_multicall:
    mov esi, [mc_list]
    test esi, esi
    jz pc_done
    mov ebx, [mc_inc_index]
    cmp ebx, -1
    je pc_done
    shl ebx, 5
    add esi, ebx
    mov eax, [mc_list_end]
    sub eax, esi
    cmp eax, 32
    jl pc_done                      # that entry was not in the copied list
    mov eax, [esi + 4]
    mov ebx, [esi + 8]
    mov ecx, [esi + 24]
    jmp track_increase
pc_done:
    ret

# track_increase(EAX = op, EBX = extent list, ECX = result)
track_increase:
    test eax, 15
    jnz ti_done
    test ecx, ecx
    jle ti_done
    cmp ecx, 1024
    ja ti_done
    # only lists it can read back: ext_inc, or the scratch page
    cmp ebx, ext_inc
    je ti_mark
    mov edx, ebx
    sub edx, [scratch_va]
    cmp edx, 4096
    jae ti_done
ti_mark:
    mov eax, ebx
    sub eax, [scratch_va]
    cmp eax, 4096
    jae ti_loop
    # in the scratch page: only the entries before its end were written
    mov edx, [stack_end]
    sub edx, ebx
    shr edx, 2
    cmp ecx, edx
    jbe ti_loop
    mov ecx, edx
ti_loop:
    test ecx, ecx
    jz ti_done
    mov eax, [ebx]
    and eax, 0xFFFFF
    bts dword ptr [own_bits], eax
    inc dword ptr [frames_gained]
    add ebx, 4
    dec ecx
    jmp ti_loop
ti_done:
    ret

# ---- random numbers -----------------------------------------------------------------
# rand -> EAX (xorshift32); clobbers EDX
rand:
    mov eax, [rng]
    mov edx, eax
    shl edx, 13
    xor eax, edx
    mov edx, eax
    shr edx, 17
    xor eax, edx
    mov edx, eax
    shl edx, 5
    xor eax, edx
    mov [rng], eax
    ret

# rand_below(ECX = n > 0) -> EAX in [0, n); clobbers EDX
rand_below:
    call rand
    mul ecx
    mov eax, edx
    ret

# pick_int -> EAX: a boundary value, a small number or a random one
pick_int:
    mov ecx, 16
    call rand_below
    cmp eax, 12
    jae pi_other
    mov eax, [int_table + eax * 4]
    ret
pi_other:
    cmp eax, 14
    jae rand
    mov ecx, 64
    jmp rand_below

# pick_count(ECX = n) -> EAX: n mostly, else fewer, 0, or a huge count
pick_count:
    push ecx
    mov ecx, 16
    call rand_below
    pop ecx
    cmp eax, 11
    jb pc_n
    cmp eax, 12
    jb pc_fewer
    sub eax, 12
    mov eax, [huge_table + eax * 4]
    ret
pc_n:
    mov eax, ecx
    ret
pc_fewer:
    inc ecx
    jmp rand_below

# pick_domid -> EAX
pick_domid:
    mov ecx, 16
    call rand_below
    cmp eax, 12
    jae pd_random
    mov eax, [domid_table + eax * 4]
    jmp filter_domid
pd_random:
    call rand
    and eax, 0xFFFF
    jmp filter_domid

# pick_port -> EAX
pick_port:
    mov ecx, 16
    call rand_below
    cmp eax, 8
    jae pp_table_port
    mov ecx, 8
    jmp rand_below
pp_table_port:
    cmp eax, 15
    je rand
    sub eax, 8
    mov eax, [port_table + eax * 4]
    ret

# pick_reg -> EAX: a debug register number (0..7 mostly)
pick_reg:
    mov ecx, 16
    call rand_below
    cmp eax, 12
    jae pick_int
    and eax, 7
    ret

# pick_bad_sel -> EAX: a selector VALID_CODESEL refuses
pick_bad_sel:
    mov ecx, 4
    call rand_below
    cmp eax, 3
    je pbs_random
    mov eax, [bad_sel_table + eax * 4]
    ret
pbs_random:
    call rand
    and eax, 0xFFFF
    mov edx, eax
    and edx, 3
    cmp edx, 1
    jne pbs_done
    xor eax, 3                      # RPL 1 -> RPL 2
pbs_done:
    ret

# pick_mfn -> EAX: a machine frame number (20 bits)
pick_mfn:
    mov ecx, 16
    call rand_below
    jmp dword ptr [pm_table + eax * 4]
pm_own:
    mov ecx, [nr_pages]
    call rand_below
    jmp pm_from_pfn
pm_free:
    mov ecx, [nr_pages]
    sub ecx, [prot_pages]
    call rand_below
    add eax, [prot_pages]
pm_from_pfn:
    mov edx, [mfn_list]
    mov eax, [edx + eax * 4]
    ret
pm_l2:
    mov eax, [l2_mfn]
    ret
pm_l1:
    mov eax, [l1_mfn]
    ret
pm_below:
    call pm_distance
    mov edx, [own_min]
    sub edx, eax
    mov eax, edx
    and eax, 0xFFFFF
    ret
pm_above:
    call pm_distance
    add eax, [own_max]
    and eax, 0xFFFFF
    ret
# pm_distance -> EAX in 1..32 (a neighbour's first frames: its image, its tables)
# or 1..512
pm_distance:
    call rand
    test al, 1
    mov ecx, 32
    jz pmd_near
    mov ecx, 512
pmd_near:
    call rand_below
    inc eax
    ret
pm_any:
    mov ecx, 16384
    jmp rand_below
pm_hv:
    mov ecx, 256
    jmp rand_below
pm_out:
    call rand
    and eax, 0xFFFFF
    or eax, 0x80000
    ret
pm_shared:
    mov eax, [shared_mfn]
    ret
pm_scratch:
    mov eax, [scratch_mfn]
    ret

# pick_index -> EAX: a page-table slot 0..1023
pick_index:
    mov ecx, 8
    call rand_below
    jmp dword ptr [px_table + eax * 4]
px_any:
    mov ecx, 1024
    jmp rand_below
px_tail:                            # half the time one of 8 "hot" pages after the
    call rand                       # guard page, so maps, LDT bases and accesses meet
    test al, 1
    jz px_tail_hot
    mov ecx, 1024
    sub ecx, [prot_pages]
    call rand_below
    add eax, [prot_pages]
    ret
px_tail_hot:
    mov ecx, 8
    call rand_below
    add eax, [prot_pages]
    ret
px_sandbox:
    mov ecx, 256
    call rand_below
    add eax, 256
    ret
px_live:
    mov ecx, [prot_pages]
    jmp rand_below
px_xen:
    mov ecx, 16
    call rand_below
    add eax, 1008
    ret
px_bootstrap:
    mov eax, 768
    ret

# pick_pte -> EAX: a page-table entry
pick_pte:
    mov ecx, 16
    call rand_below
    cmp eax, 2
    jb pick_int
    push eax
    call pick_mfn
    shl eax, 12
    pop ecx
    or eax, [pte_flags + ecx * 4]
    ret

# pick_ma -> EAX: machine address of a page-table entry (low two bits 0)
pick_ma:
    call pick_mfn
    shl eax, 12
    push eax
    call pick_index
    shl eax, 2
    pop edx
    or eax, edx
    ret

# pick_unmapped -> EAX: an address it never maps: below the sandbox, between the
# sandbox and its own region, above its region, or its guard page
pick_unmapped:
    mov ecx, 4
    call rand_below
    jmp dword ptr [pu_table + eax * 4]
pu_low:
    mov ecx, 0x40000000
    jmp rand_below
pu_mid:
    mov ecx, 0x40000000
    call rand_below
    add eax, 0x80000000
    ret
pu_high:
    mov ecx, 0x3BC00000
    call rand_below
    add eax, 0xC0400000
    ret
pu_guard:
    mov ecx, 4096
    call rand_below
    add eax, [stack_end]
    ret

# pick_ptr(ESI = own buffer, ECX = bytes of content, [pp_flags]: 1 = may cross
# into the guard page, 2 = may be its read-only page directory, whose contents it
# does not filter: only for calls that cannot hurt it whatever they read) -> EAX.
# Clobbers ECX, EDX, ESI, EDI.
pick_ptr:
    mov [pp_buf], esi
    mov [pp_len], ecx
    mov ecx, 16
    call rand_below
    jmp dword ptr [pp_table + eax * 4]
pp_own:
    mov eax, [pp_buf]
    ret
pp_cross:
    test byte ptr [pp_flags], 1
    jz pp_own
    cmp byte ptr [in_multicall], 0
    jne pp_own
    mov ecx, [pp_len]
    test ecx, ecx
    jnz pp_have_len
    mov ecx, 8
pp_have_len:
    call rand_below
    inc eax
    mov esi, [pp_buf]
    jmp copy_to_page_end
pp_ro:
    test byte ptr [pp_flags], 2
    jz pick_unmapped
    call rand
    and eax, 0xFFC
    add eax, [pt_base_va]
    ret
pp_hv:
    mov ecx, 0x04000000
    call rand_below
    add eax, 0xFC000000
    ret
pp_bound:
    mov ecx, 8
    call rand_below
    mov eax, [ptr_bound_table + eax * 4]
    ret
pp_random:
    call rand
    mov edx, eax
    sub edx, 0x40000000
    cmp edx, 0x40000000
    jae pp_not_sandbox
    xor eax, 0x40000000             # the sandbox -> below it
    ret
pp_not_sandbox:
    mov edx, eax
    sub edx, 0xC0000000
    cmp edx, 0x00400000
    jae pp_random_ok
    add eax, 0x00400000             # its own region -> above it
pp_random_ok:
    ret

# copy_to_page_end(ESI = source, EAX = k <= 256 bytes) -> EAX = scratch page end - k,
# where the first k bytes of the source now lie, right before the unmapped guard page
copy_to_page_end:
    mov ecx, eax
    mov edi, [stack_end]
    sub edi, ecx
    push edi
    rep movsb
    pop eax
    ret

# ---- filters: what would hurt the fuzzer itself ----------------------------------------
# filter_pt_write(EAX = machine address of an entry, EDX = new value) -> EAX, EDX
filter_pt_write:
    push ebx
    mov ebx, eax
    shr ebx, 12
    cmp ebx, [l2_mfn]
    jne fpw_not_l2
    mov ecx, eax
    shr ecx, 2
    and ecx, 1023
    cmp ecx, 1008
    jae fpw_l2_value
    cmp ecx, 256
    jb fpw_move_slot
    cmp ecx, 512
    jb fpw_l2_value
fpw_move_slot:
    and eax, 0xFFFFF003
    and ecx, 255
    add ecx, 256
    shl ecx, 2
    or eax, ecx
fpw_l2_value:
    mov ecx, edx
    shr ecx, 12
    cmp ecx, [l1_mfn]
    jne fpw_done
    xor edx, edx                    # never a second slot for the bootstrap L1
    jmp fpw_done
fpw_not_l2:
    cmp ebx, [l1_mfn]
    jne fpw_not_l1
    mov ecx, eax
    shr ecx, 2
    and ecx, 1023
    cmp ecx, [prot_pages]
    jae fpw_done
    add ecx, [prot_pages]
    and eax, 0xFFFFF003
    shl ecx, 2
    or eax, ecx
    jmp fpw_done
fpw_not_l1:
    call redirect_live
fpw_done:
    pop ebx
    ret

# redirect_live(EAX = machine address) -> EAX: a raw write aimed at one of its live
# frames, or at its scratch page, goes to the first half of the scratch page: lists
# are copied to its last 256 bytes to cross into the guard page (a multicall list
# there, overwritten by one of its own entries, once became a trap table).
# Clobbers ECX.
redirect_live:
    mov ecx, eax
    shr ecx, 12
    cmp ecx, [scratch_mfn]
    je rl_scratch
    bt dword ptr [live_bits], ecx
    jnc rl_done
rl_scratch:
    and eax, 0x7FF
    mov ecx, [scratch_mfn]
    shl ecx, 12
    or eax, ecx
rl_done:
    ret

# filter_req(EDI = mmu_update request)
filter_req:
    mov eax, [edi]
    mov edx, eax
    and edx, 3
    jz fr_normal
    cmp edx, 3
    jne fr_done
    cmp byte ptr [edi + 4], 5       # MMUEXT_NEW_BASEPTR
    jne fr_done
    shr eax, 12
    cmp eax, [l2_mfn]
    je fr_done
    bt dword ptr [own_bits], eax
    jnc fr_done
    mov eax, [l2_mfn]
    shl eax, 12
    or eax, 3
    mov [edi], eax
fr_done:
    ret
fr_normal:
    mov edx, [edi + 4]
    call filter_pt_write
    mov [edi], eax
    mov [edi + 4], edx
    ret

# filter_page_nr(EAX = page number) -> EAX: not one of its protected pages
filter_page_nr:
    mov edx, eax
    sub edx, 0xC0000
    cmp edx, [prot_pages]
    jae fpn_done
    add eax, [prot_pages]
fpn_done:
    ret

# ---- generators: fill hc_nr (already chosen) and hc_a1..hc_a5 ----------------------
gen_call:
    mov ecx, 16
    call rand_below
    test eax, eax
    jnz gc_table
    call rand
    jmp gc_have
gc_table:
    mov ecx, 64
    call rand_below
    movzx eax, byte ptr [nr_table + eax]
gc_have:
    mov [hc_nr], eax
    call pick_int
    mov [hc_a1], eax
    call pick_int
    mov [hc_a2], eax
    call pick_int
    mov [hc_a3], eax
    call pick_int
    mov [hc_a4], eax
    call pick_int
    mov [hc_a5], eax
    mov byte ptr [pp_flags], 1
    mov eax, [hc_nr]
    and eax, 31
    jmp dword ptr [gen_table + eax * 4]

gen_ints:
    ret

# a pointer to random bytes (physdev_op, grant_table_op, unused numbers)
gen_junk_ptr:
    mov edi, junk
    mov ebx, 16
gjp_fill:
    call rand
    stosd
    dec ebx
    jnz gjp_fill
    mov esi, junk
    mov ecx, 64
    mov byte ptr [pp_flags], 3
    call pick_ptr
    mov [hc_a1], eax
    ret

gen_set_trap_table:
    mov ecx, 7
    call rand_below
    mov ebx, eax
    mov edi, trap_buf
    test ebx, ebx
    jz gstt_end
gstt_entry:
    call rand
    mov [edi], ax                   # vector, flags
    mov ecx, 4
    call rand_below
    test eax, eax
    jz gstt_bad_cs
    mov word ptr [edi + 2], 0x0819
    mov dword ptr [edi + 4], fuzz_trap
    jmp gstt_next
gstt_bad_cs:
    call pick_bad_sel
    mov [edi + 2], ax
    call rand
    mov [edi + 4], eax
gstt_next:
    add edi, 8
    dec ebx
    jnz gstt_entry
gstt_end:
    mov dword ptr [edi], 0
    mov dword ptr [edi + 4], 0
    mov ecx, edi
    sub ecx, trap_buf
    add ecx, 8
    mov esi, trap_buf
    call pick_ptr
    mov [hc_a1], eax
    ret

gen_mmu_update:
    mov ecx, 8
    call rand_below
    inc eax
    mov [mmu_n], eax
    mov ebx, eax
    mov edi, req_buf
gmu_req:
    call gen_mmu_req
    call filter_req
    add edi, 8
    dec ebx
    jnz gmu_req
    mov dword ptr [edi], 0          # (0, 0): frame 0 is the hypervisor's, always refused
    mov dword ptr [edi + 4], 0
    mov ecx, [mmu_n]
    call pick_count
    mov [hc_a2], eax
    mov ecx, [mmu_n]
    lea ecx, [ecx * 8 + 8]
    mov esi, req_buf
    call pick_ptr
    mov [hc_a1], eax
    # *success_count: none, its word, straddling the guard page (no copy: a write
    # there fails whole), its read-only page directory, never mapped, or Xen's
    mov dword ptr [succ_word], 0
    mov ecx, 8
    call rand_below
    jmp dword ptr [succ_table + eax * 4]
gmu_no_count:
    xor eax, eax
    jmp gmu_succ
gmu_word:
    mov eax, succ_word
    jmp gmu_succ
gmu_straddle:
    mov ecx, 3
    call rand_below
    inc eax
    neg eax
    add eax, [stack_end]
    jmp gmu_succ
gmu_ro:
    mov eax, [pt_base_va]
    jmp gmu_succ
gmu_elsewhere:
    call pick_unmapped_or_hv
gmu_succ:
    mov [hc_a3], eax
    ret

# gen_mmu_req(EDI): one request; preserves EBX, EDI
gen_mmu_req:
    push ebx
    mov ecx, 16
    call rand_below
    cmp eax, 8
    jb gmr_normal
    cmp eax, 10
    jb gmr_machphys
    cmp eax, 15
    jb gmr_ext
    call rand
    mov [edi], eax
    call rand
    mov [edi + 4], eax
    pop ebx
    ret
gmr_normal:
    call pick_ma
    mov [edi], eax
    call pick_pte
    mov [edi + 4], eax
    pop ebx
    ret
gmr_machphys:
    call pick_mfn
    shl eax, 12
    or eax, 2
    mov [edi], eax
    call pick_int
    mov [edi + 4], eax
    pop ebx
    ret
gmr_ext:
    mov ecx, 16
    call rand_below
    cmp eax, 14
    jb gmr_cmd
    call rand
    and eax, 0xFF
gmr_cmd:
    mov ebx, eax
    mov ecx, 8
    call rand_below
    mov eax, [ext_arg_table + eax * 4]
    cmp eax, -1
    jne gmr_arg
    call rand
    and eax, 0xFFFFFF
gmr_arg:
    cmp ebx, 10                     # MMUEXT_SET_FOREIGNDOM: the domain is val >> 16
    jne gmr_arg_set
    push eax
    shr eax, 8
    call filter_domid
    shl eax, 8
    pop edx
    mov al, dl
gmr_arg_set:
    shl eax, 8
    or eax, ebx
    mov [edi + 4], eax
    cmp ebx, 9                      # MMUEXT_SET_LDT takes a linear address
    jne gmr_ext_mfn
    call pick_ldt_base
    jmp gmr_ext_ptr
gmr_ext_mfn:
    call pick_mfn
    shl eax, 12
gmr_ext_ptr:
    or eax, 3
    mov [edi], eax
    pop ebx
    ret

# pick_ldt_base -> EAX
pick_ldt_base:
    mov ecx, 8
    call rand_below
    cmp eax, 2
    jb pick_unmapped
    cmp eax, 4
    jb plb_tail
    cmp eax, 5
    jb plb_own
    cmp eax, 6
    jb plb_sandbox
    jmp pick_int
plb_tail:
    call px_tail
    shl eax, 12
    add eax, 0xC0000000
    ret
plb_own:
    mov eax, [pt_base_va]
    ret
plb_sandbox:
    mov ecx, 0x40000
    call rand_below
    shl eax, 12
    add eax, 0x40000000
    ret

gen_set_gdt:
    mov ebx, 16
    mov edi, gdt_frames
gsg_frame:
    call pick_mfn
    stosd
    dec ebx
    jnz gsg_frame
    mov eax, [gdt_frames]
    shl eax, 12
    call redirect_live              # set_gdt zaps Xen's entries in frame 0
    shr eax, 12
    mov [gdt_frames], eax
    mov ecx, 16
    call rand_below
    mov eax, [gdt_entries_table + eax * 4]
    cmp eax, -1
    jne gsg_entries
    mov ecx, 8194
    call rand_below
gsg_entries:
    mov [hc_a2], eax
    mov ecx, 16
    call rand_below
    inc eax
    shl eax, 2
    mov ecx, eax
    mov esi, gdt_frames
    call pick_ptr
    mov [hc_a1], eax
    ret

gen_stack_switch:
    mov ecx, 4
    call rand_below
    mov eax, [ss_table + eax * 4]
    cmp eax, -1
    jne gss_ss
    call rand
gss_ss:
    mov [hc_a1], eax
    ret

gen_set_callbacks:
    mov ebx, hc_a1
    mov esi, fuzz_event
    call gsc_pair
    mov ebx, hc_a3
    mov esi, fuzz_failsafe
# gsc_pair(EBX = where the selector and address go, ESI = its own handler)
gsc_pair:
    mov ecx, 8
    call rand_below
    cmp eax, 5
    jb gsc_good
    cmp eax, 7
    jb gsc_bad_addr
    call pick_bad_sel
    mov [ebx], eax
    call rand
    mov [ebx + 4], eax
    ret
gsc_good:
    mov dword ptr [ebx], 0x0819
    mov [ebx + 4], esi
    ret
gsc_bad_addr:
    # No callback (address 0) for events; never for the failsafe callback: after a
    # failed segment reload that is a crash. An event callback at a bad address is
    # left out too: upcalls come at any instruction, and the fault there would make
    # the run depend on timing, not only on the seed.
    cmp esi, fuzz_failsafe
    je gsc_good
    mov dword ptr [ebx], 0x0819
    mov dword ptr [ebx + 4], 0
    ret

gen_sched_op:
    mov ecx, 8
    call rand_below
    cmp eax, 1
    jb gso_yield
    cmp eax, 2
    jb gso_block
    call rand
    cmp al, 2                       # SCHEDOP_shutdown is the one command it skips
    jne gso_op
    xor al, 1
gso_op:
    mov [hc_a1], eax
    ret
gso_yield:
    mov dword ptr [hc_a1], 0
    ret
gso_block:
    cmp byte ptr [in_multicall], 0
    jne gso_yield
    mov eax, HC_SET_TIMER_OP        # a timer already due: the block always ends
    xor ebx, ebx
    mov ecx, 1
    int 0x82
    inc dword ptr [extra_calls]
    mov dword ptr [hc_a1], 1
    ret

gen_dom0_op:
    mov edi, dom0_buf
    mov ebx, 20
gdo_fill:
    call rand
    stosd
    dec ebx
    jnz gdo_fill
    mov ecx, 16
    call rand_below
    cmp eax, 12
    jae gdo_any_cmd
    mov eax, [dom0_cmd_table + eax * 4]
    jmp gdo_cmd
gdo_any_cmd:
    mov ecx, 64
    call rand_below
gdo_cmd:
    mov [dom0_buf], eax
    call rand
    test al, 3
    jz gdo_fields
    mov dword ptr [dom0_buf + 4], 0xAAAA0019
gdo_fields:
    # the union: scheduler commands take (sched_id, direction, ...), the others a
    # domain first; PINCPUDOMAIN a CPU after it
    mov eax, [dom0_buf]
    cmp eax, 6                      # DOM0_SCHEDCTL
    je gdo_sched
    cmp eax, 7                      # DOM0_ADJUSTDOM
    je gdo_sched
    call pick_domid
    mov [dom0_buf + 8], ax
    cmp dword ptr [dom0_buf], 20    # DOM0_PINCPUDOMAIN
    jne gdo_ptr
    mov ecx, 4
    call rand_below
    cmp eax, 3
    je gdo_ptr                      # a random cpu
    dec eax                         # -1 (unpin), 0, 1
    mov [dom0_buf + 12], eax
    jmp gdo_ptr
gdo_sched:
    call rand
    test al, 3
    jz gdo_direction
    mov dword ptr [dom0_buf + 8], 0         # SCHED_BVT
gdo_direction:
    call rand
    and eax, 3
    cmp eax, 2
    jae gdo_sched_domain
    mov [dom0_buf + 12], eax                # PUT or GET
gdo_sched_domain:
    call pick_domid
    mov [dom0_buf + 16], ax
    cmp dword ptr [dom0_buf], 6
    jne gdo_ptr
    mov ecx, 8                               # ctx_allow
    call rand_below
    mov eax, [ctx_allow_table + eax * 4]
    mov [dom0_buf + 16], eax
gdo_ptr:
    mov esi, dom0_buf
    mov ecx, 80
    mov byte ptr [pp_flags], 3
    call pick_ptr
    mov [hc_a1], eax
    ret

gen_set_debugreg:
    call pick_reg
    mov [hc_a1], eax
    mov ecx, 4
    call rand_below
    test eax, eax
    jnz gsd_done
    mov ecx, 0x00400000             # an address in its own code and data
    call rand_below
    add eax, 0xC0000000
    mov [hc_a2], eax
gsd_done:
    ret

gen_get_debugreg:
    call pick_reg
    mov [hc_a1], eax
    ret

gen_update_descriptor:
    mov ecx, 8
    call rand_below
    cmp eax, 6
    jae gud_words
    call pick_mfn
    shl eax, 12
    mov ebx, eax
    call rand
    and eax, 0xFF8
    or ebx, eax
    call rand
    test al, 7
    jnz gud_aligned
    and eax, 7
    or ebx, eax
gud_aligned:
    mov [hc_a1], ebx
gud_words:
    mov ecx, 10
    call rand_below
    cmp eax, 8
    jae gud_done
    mov edx, [desc_table + eax * 8]
    mov [hc_a2], edx
    mov edx, [desc_table + eax * 8 + 4]
    mov [hc_a3], edx
gud_done:
    mov eax, [hc_a1]
    call redirect_live
    mov [hc_a1], eax
    ret

gen_set_fast_trap:
    mov ecx, 8
    call rand_below
    cmp eax, 6
    jae gsft_done
    mov eax, [fast_trap_table + eax * 4]
    cmp eax, -1
    jne gsft_set
    mov ecx, 16
    call rand_below
    add eax, 0x20
gsft_set:
    mov [hc_a1], eax
gsft_done:
    ret

gen_dom_mem_op:
    mov ecx, 8
    call rand_below
    mov eax, [memop_table + eax * 4]
    cmp eax, -1
    jne gdm_op
    call rand
gdm_op:
    test eax, 15
    jnz gdm_not_increase
    cmp byte ptr [in_multicall], 0
    je gdm_op_ok
    cmp dword ptr [mc_inc_index], -1
    je gdm_first_increase
    or eax, 1                       # one increase per multicall (see post_call)
    jmp gdm_op_ok
gdm_first_increase:
    mov edx, [mc_j]
    mov [mc_inc_index], edx
gdm_op_ok:
gdm_not_increase:
    mov [hc_a1], eax
    mov ecx, 16
    call rand_below
    inc eax
    mov [dm_n], eax
    mov ebx, eax
    mov edi, ext_dec
gdm_extent:
    mov ecx, 4
    call rand_below
    test eax, eax
    jz gdm_any_frame
    call pm_free
    jmp gdm_store
gdm_any_frame:
    call pick_mfn
gdm_store:
    stosd
    dec ebx
    jnz gdm_extent
    mov ecx, [dm_n]
    call pick_count
    mov [hc_a3], eax
    mov eax, [hc_a1]
    test eax, 15
    jnz gdm_dec_list
    mov esi, ext_inc
    mov ecx, [dm_n]
    shl ecx, 2
    mov byte ptr [pp_flags], 3
    call pick_ptr
    mov [hc_a2], eax
    jmp gdm_order
gdm_dec_list:
    mov esi, ext_dec
    mov ecx, [dm_n]
    shl ecx, 2
    mov byte ptr [pp_flags], 3
    call pick_ptr
    mov [hc_a2], eax
gdm_order:
    mov ecx, 8
    call rand_below
    mov eax, [order_table + eax * 4]
    mov [hc_a4], eax
    mov ecx, 4
    call rand_below
    test eax, eax
    jz gdm_other_dom
    mov dword ptr [hc_a5], 0x7FF0
    ret
gdm_other_dom:
    call pick_domid
    mov [hc_a5], eax
    ret

gen_multicall:
    cmp byte ptr [in_multicall], 0
    jne gen_ints                    # nested: Xen skips the entry
    mov eax, [hc_nr]
    mov [mc_saved_nr], eax
    mov ecx, 8
    call rand_below
    inc eax
    mov [mc_k], eax
    mov byte ptr [in_multicall], 1
    mov dword ptr [mc_inc_index], -1
    mov dword ptr [mc_j], 0
gmc_entry:
    call gen_call
    mov edi, [mc_j]
    shl edi, 5
    add edi, mc_buf
    mov esi, hc_nr
    mov ecx, 6
    rep movs dword ptr es:[edi], dword ptr [esi]
    xor eax, eax
    stosd
    stosd
    inc dword ptr [mc_j]
    mov eax, [mc_j]
    cmp eax, [mc_k]
    jb gmc_entry
    mov byte ptr [in_multicall], 0
    mov eax, [mc_saved_nr]
    mov [hc_nr], eax
    mov eax, [mc_k]
    add [mc_entries], eax
    # where the list goes and how many entries the call names
    mov ecx, 16
    call rand_below
    cmp eax, 10
    jb gmc_own
    cmp eax, 11
    jb gmc_fewer
    cmp eax, 13
    jb gmc_cross_all
    cmp eax, 14
    jb gmc_cross_part
    call pick_unmapped
    mov [hc_a1], eax
    mov eax, [mc_k]
    mov [hc_a2], eax
    ret
gmc_own:
    mov dword ptr [hc_a1], mc_buf
    mov eax, [mc_k]
    mov [hc_a2], eax
    jmp gmc_list_in_buf
gmc_fewer:
    mov dword ptr [hc_a1], mc_buf
    mov ecx, [mc_k]
    call rand_below
    mov [hc_a2], eax
gmc_list_in_buf:
    mov eax, [mc_k]
    shl eax, 5
    add eax, mc_buf
    mov [mc_list_end], eax
    mov dword ptr [mc_list], mc_buf
    ret
gmc_cross_all:
    # the whole list right before the guard page: a count beyond it ends in -EFAULT
    mov eax, [mc_k]
    shl eax, 5
    mov esi, mc_buf
    call copy_to_page_end
    mov [hc_a1], eax
    mov [mc_list], eax
    mov eax, [stack_end]
    mov [mc_list_end], eax
    mov ecx, 8
    call rand_below
    mov eax, [mc_count_table + eax * 4]
    cmp eax, -1
    jne gmc_count
    mov eax, [mc_k]
    inc eax
gmc_count:
    mov [hc_a2], eax
    ret
gmc_cross_part:
    mov ecx, [mc_k]
    shl ecx, 5
    call rand_below
    inc eax
    mov esi, mc_buf
    call copy_to_page_end
    mov [hc_a1], eax
    mov [mc_list], eax
    mov eax, [stack_end]
    mov [mc_list_end], eax
    mov eax, [mc_k]
    mov [hc_a2], eax
    ret

gen_update_va_mapping:
    call guvm_common
    ret
guvm_common:
    mov ecx, 8
    call rand_below
    jmp dword ptr [uvm_table + eax * 4]
guvm_tail:
    call px_tail
    add eax, 0xC0000
    jmp guvm_page
guvm_sandbox:
    mov ecx, 0x40000
    call rand_below
    add eax, 0x40000
    jmp guvm_page
guvm_live:
    mov ecx, [prot_pages]
    call rand_below
    add eax, 0xC0000
    jmp guvm_page
guvm_hv:
    mov ecx, 0x4000
    call rand_below
    add eax, 0xFC000
    jmp guvm_page
guvm_random:
    call rand
    jmp guvm_page
guvm_page20:
    call rand
    and eax, 0xFFFFF
guvm_page:
    call filter_page_nr
    mov [hc_a1], eax
    call pick_pte
    mov [hc_a2], eax
    mov ecx, 8
    call rand_below
    cmp eax, 4
    jae guvm_flags_done
    mov [hc_a3], eax
guvm_flags_done:
    ret

gen_uvm_otherdomain:
    call guvm_common
    call pick_domid
    mov [hc_a4], eax
    ret

gen_set_timer_op:
    mov ecx, 8
    call rand_below
    cmp eax, 6
    jae gsto_done
    mov edx, [timer_table + eax * 8]
    mov [hc_a1], edx
    mov edx, [timer_table + eax * 8 + 4]
    mov [hc_a2], edx
gsto_done:
    ret

gen_event_channel_op:
    mov edi, evt_buf
    mov ebx, 8
geo_fill:
    call rand
    stosd
    dec ebx
    jnz geo_fill
    mov ecx, 16
    call rand_below
    cmp eax, 14
    jae geo_cmd_random
    shr eax, 1                      # 0..6
    jmp geo_cmd
geo_cmd_random:
    call pick_int
geo_cmd:
    mov [evt_buf], eax
    cmp eax, 1                      # bind_virq: a VIRQ number first
    je geo_virq
    cmp eax, 4                      # send: a port first
    je geo_port_first
    call pick_domid
    mov [evt_buf + 8], ax
    call pick_domid
    mov [evt_buf + 10], ax
    jmp geo_ports
geo_virq:
    mov ecx, 10
    call rand_below
    cmp eax, 9
    jb geo_virq_set
    call pick_int
geo_virq_set:
    mov [evt_buf + 8], eax
    jmp geo_ports
geo_port_first:
    call pick_port
    mov [evt_buf + 8], eax
geo_ports:
    call pick_port
    mov [evt_buf + 12], eax
    call pick_port
    mov [evt_buf + 16], eax
    mov esi, evt_buf
    mov ecx, 32
    mov byte ptr [pp_flags], 3
    call pick_ptr
    mov [hc_a1], eax
    ret

gen_xen_version:
    mov ecx, 4
    call rand_below
    cmp eax, 2
    jae gxv_done
    mov [hc_a1], eax
gxv_done:
    ret

# Only a whole "fuzz\n" line from its own memory: anything else it points at is
# unmapped, so nothing half-written reaches its console.
gen_console_io:
    mov ecx, 8
    call rand_below
    cmp eax, 3
    jb gci_cmd
    call pick_int
gci_cmd:
    mov [hc_a1], eax
    mov ecx, 64
    call rand_below
    test eax, eax
    jz gci_line
    call pick_unmapped_or_hv
    mov [hc_a3], eax
    ret
gci_line:
    mov dword ptr [hc_a1], 0
    mov dword ptr [hc_a2], 5
    mov dword ptr [hc_a3], console_line
    ret

pick_unmapped_or_hv:
    mov ecx, 4
    call rand_below
    cmp eax, 2
    jb pick_unmapped
    je pp_hv
    jmp pp_bound

gen_vm_assist:
    mov ecx, 8
    call rand_below
    cmp eax, 6
    jae gva_done
    mov ecx, 3
    call rand_below
    mov [hc_a1], eax
    mov ecx, 5
    call rand_below
    mov [hc_a2], eax
gva_done:
    ret

fuzz_code_end:

# ---- tables ---------------------------------------------------------------------------
.align 4
gen_table:
    .long gen_set_trap_table, gen_mmu_update, gen_set_gdt, gen_stack_switch
    .long gen_set_callbacks, gen_ints, gen_sched_op, gen_dom0_op
    .long gen_set_debugreg, gen_get_debugreg, gen_update_descriptor, gen_set_fast_trap
    .long gen_dom_mem_op, gen_multicall, gen_update_va_mapping, gen_set_timer_op
    .long gen_event_channel_op, gen_xen_version, gen_console_io, gen_junk_ptr
    .long gen_junk_ptr, gen_vm_assist, gen_uvm_otherdomain, gen_junk_ptr
    .long gen_ints, gen_junk_ptr, gen_ints, gen_junk_ptr
    .long gen_ints, gen_junk_ptr, gen_ints, gen_junk_ptr
# hypercall numbers by weight (64 slots)
nr_table:
    .byte 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 4
    .byte 4, 5, 6, 7, 7, 8, 8, 9, 10, 10, 10, 11, 11, 12, 12, 12
    .byte 12, 13, 13, 13, 13, 13, 14, 14, 14, 14, 14, 15, 15, 16, 16, 16
    .byte 16, 16, 16, 17, 18, 18, 19, 20, 21, 21, 22, 22, 23, 26, 29, 31
.align 4
int_table:
    .long 0, 1, 2, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFF, 0x10000
    .long 0x1000, 0xFFF, 0x7FF0, 0xFFFFFFFE
huge_table:
    .long 0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000
domid_table:
    .long 0x7FF0, 0, 1, 2, 3, 4, 5, 0x7FF1, 0x7FF2, 0x7FFF, 0xFFFF, 0x7FEF
port_table:
    .long 1023, 1024, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x10000
bad_sel_table:
    .long 0x0821, 0x082B, 0x0808
pm_table:
    .long pm_own, pm_own, pm_free, pm_free, pm_free, pm_l2, pm_l1, pm_below
    .long pm_below, pm_above, pm_any, pm_any, pm_hv, pm_out, pm_shared, pm_scratch
px_table:
    .long px_any, px_any, px_tail, px_tail, px_sandbox, px_live, px_xen, px_bootstrap
pte_flags:
    .long 0, 0, 0x67, 0x67, 0x63, 0x65, 0x61, 0x27
    .long 0x25, 0x01, 0x03, 0x00, 0x167, 0xE7, 0x80, 0xFFF
poke_table:
    .long poke_seg, poke_seg, poke_int, poke_priv, poke_fpu, poke_read, poke_write_ro, poke_exc
    .long poke_ring3, poke_ring3
dom0_cmd_table:
    .long 12, 12, 17, 20, 20, 10, 11, 7, 7, 6, 24, 22
ctx_allow_table:
    .long 0, 1, 1000, 100000, 5000000, 50000000, 0x7FFFFFFF, 0xFFFFFFFF
sel_table:
    .long 0, 0x0821, 0x0833, 0x082B
pu_table:
    .long pu_low, pu_mid, pu_high, pu_guard
pp_table:
    .long pp_own, pp_own, pp_own, pp_own, pp_own, pp_own, pp_own, pp_cross
    .long pp_cross, pp_ro, pick_unmapped, pick_unmapped, pp_hv, pp_hv, pp_bound, pp_random
ptr_bound_table:
    .long 0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFBFFFFFF, 0xFBFFFFFC, 0xFC000000, 0xFFFFF000
ext_arg_table:
    .long 0, 1, 0x7FF100, 0x7FF000, 8192, 8193, 0xFFFFFF, -1
gdt_entries_table:
    .long 296, 297, 512, 513, 1024, 8192, 8193, 0
    .long 1, 295, 0xFFFFFFFF, 0x80000000, 4096, -1, -1, -1
ss_table:
    .long 0x0821, 0x0000, 0x0833, -1
desc_table:
    .long 0, 0                       # null
    .long 0x0000FFFF, 0x00CFBA00     # flat ring-1 code (limit truncated)
    .long 0x0000FFFF, 0x00CFB200     # flat ring-1 data
    .long 0x0000FFFF, 0x00CF9A00     # DPL 0 code: refused
    .long 0x0000FFFF, 0xFC40B200     # base in the hypervisor area: refused
    .long 0x08190000, 0x0000EC00     # call gate to FLAT_RING1_CS
    .long 0x08080000, 0x0000EC00     # call gate to Xen's CS: refused
    .long 0x0000FFFF, 0x00CF8900     # a TSS: refused
fast_trap_table:
    .long 0, 0x80, -1, 0x81, 0x1F, 0x100
memop_table:
    .long 0, 0, 1, 1, 1, 2, 0x31, -1
order_table:
    .long 0, 0, 0, 0, 1, 9, 31, 32
mc_count_table:
    .long 0x7FFFFFF, 0x8000000, 0xFFFFFFFF, 1000, -1, -1, -1, -1
succ_table:
    .long gmu_no_count, gmu_no_count, gmu_word, gmu_word, gmu_word, gmu_straddle, gmu_ro, gmu_elsewhere
uvm_table:
    .long guvm_tail, guvm_tail, guvm_sandbox, guvm_live, guvm_hv, guvm_random, guvm_page20, guvm_tail
timer_table:
    .long 0, 0, 0, 1, 0xFFFFFFFF, 0xFFFFFFFF, 0, 0xFFFFFFFF, 1, 0, 0x7FFFFFFF, 0

key_seed: .asciz "seed="
key_calls: .asciz "calls="
key_trace: .asciz "trace="
key_victim: .asciz "victim="
key_protect: .asciz "protect="
t_tr_iter: .asciz "trace_iteration"
t_tr_word: .asciz "trace_arg"
t_tr_entry: .asciz "trace_entry"
t_seed: .asciz "fuzz_seed"
t_calls: .asciz "fuzz_calls"
t_layout_error: .asciz "fuzz_layout_unsupported"
t_iterations: .asciz "fuzz_iterations"
t_made: .asciz "fuzz_calls_made"
t_extra: .asciz "fuzz_extra_calls"
t_mc_entries: .asciz "fuzz_multicall_entries"
t_traps: .asciz "fuzz_traps"
t_pokes: .asciz "fuzz_pokes"
t_upcalls: .asciz "fuzz_upcalls"
t_failsafes: .asciz "fuzz_failsafes"
t_own_frames_gained: .asciz "fuzz_frames_gained"
t_intact: .asciz "fuzz_intact"
t_hash: .asciz "fuzz_hash"
t_kcycles: .asciz "fuzz_kcycles"
t_done: .asciz "fuzz_done"
t_last_trap0: .asciz "fuzz_last_trap_word0"
t_last_trap1: .asciz "fuzz_last_trap_word1"
t_last_trap2: .asciz "fuzz_last_trap_word2"
newline_only: .asciz "\n"
console_line: .asciz "fuzz\n"

.align 4
seed: .long 0
rng: .long 0
calls: .long 0
iterations: .long 0
made: .long 0
extra_calls: .long 0
mc_entries: .long 0
traps: .long 0
pokes: .long 0
upcalls: .long 0
failsafes: .long 0
frames_gained: .long 0
checksum0: .long 0
nr_pages: .long 0
mfn_list: .long 0
shared_mfn: .long 0
pt_base_va: .long 0
l2_mfn: .long 0
l1_mfn: .long 0
scratch_va: .long 0
scratch_pfn: .long 0
scratch_mfn: .long 0
stack_end: .long 0
live_pages: .long 0
prot_pages: .long 0
own_min: .long 0
own_max: .long 0
hc_nr: .long 0
hc_a1: .long 0
hc_a2: .long 0
hc_a3: .long 0
hc_a4: .long 0
hc_a5: .long 0
hc_result: .long 0
pp_buf: .long 0
pp_len: .long 0
pp_flags: .long 0
in_multicall: .long 0
mmu_n: .long 0
dm_n: .long 0
mc_k: .long 0
mc_j: .long 0
mc_saved_nr: .long 0
mc_inc_index: .long 0
mc_list: .long 0
mc_list_end: .long 0
succ_word: .long 0
trace_from: .long 0
privileged: .long 0
victim: .long 0x7FF0
protect_n: .long 0
protect_ids: .space 32
call_hash: .long 0x811C9DC5
start_k: .long 0
elapsed_k: .long 0
last_trap: .long 0, 0, 0

# Scratch buffers: the only memory of its own it hands to the hypervisor.
.align 64
req_buf: .space 80
trap_buf: .space 2056
evt_buf: .space 32
dom0_buf: .space 80
gdt_frames: .space 64
ext_dec: .space 64
mc_buf: .space 256
junk: .space 64
ext_inc: .space 4096
# Frames it may own, and its live frames (one bit per machine frame).
own_bits: .space 131072
live_bits: .space 131072
.align 16
.space 1024
ring3_stack_top:
.space 4096
boot_stack_top:
