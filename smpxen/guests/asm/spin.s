# spin: compute-bound. Runs the ALU loop below for N iterations (N = first number in
# the command line, default 50 000 000; 4 instructions per iteration), prints how
# many kilocycles (1024) of its PCPU's cycle counter the loop took, the checksum and
# the PCPU, then powers off. `smpxen bench` runs the same loop on raw
# Unicorn as its baseline.

guest_main:
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    test eax, eax
    jnz have_count
    mov eax, 50000000
have_count:
    mov [iterations], eax
    call rdtsc_k
    mov [start_k], eax
    mov ecx, [iterations]
    xor eax, eax
    xor edx, edx
spin_loop:
    add eax, ecx
    xor edx, eax
    dec ecx
    jnz spin_loop
spin_done:
    mov [checksum], edx
    call rdtsc_k
    sub eax, [start_k]
    mov esi, t_kcycles
    call report
    mov esi, msg_done
    call line_puts
    mov eax, [checksum]
    call line_putdec
    mov esi, msg_on_pcpu
    call line_puts
    call pcpu_id
    call line_putdec
    mov esi, msg_newline
    call line_puts
    call line_flush
    mov eax, SHUTDOWN_poweroff
    call shutdown

checksum: .long 0
iterations: .long 0
start_k: .long 0
t_kcycles: .asciz "loop_kcycles"
msg_done: .asciz "spin done, checksum "
msg_on_pcpu: .asciz " on pcpu "
msg_newline: .asciz "\n"
.align 16
.space 4096
boot_stack_top:
