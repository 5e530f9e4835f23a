# mips_window: the spin guest's ALU loop, measured over a fixed window of system time
# (`smpxen bench` runs the same chunk bytes on bare Unicorn over a window of host
# time measured the same way). Command line "START_MS LEN_MS": the guest runs chunks
# (which also translates the loop) until system time reaches START_MS, then counts
# the chunks it completes until START_MS + LEN_MS. Each chunk is CHUNK iterations of
# the loop from the same state, so every chunk must end with the same checksum.
# Prints chunks, chunk_checksum, bad_chunks, begin_us and end_us (system time at the
# first and the last check: the window actually measured).

.equ CHUNK, 1048576

guest_main:
    mov ebx, shinfo_page
    mov [shared_va], ebx
    call map_shared_info
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    mov ecx, 1000000
    mul ecx
    mov [start_ns], eax
    mov [start_ns + 4], edx
    call parse_uint
    mov ecx, 1000000
    mul ecx
    add eax, [start_ns]
    adc edx, [start_ns + 4]
    mov [end_ns], eax
    mov [end_ns + 4], edx
    call chunk
    mov [reference], edx
mw_wait:
    call chunk
    mov esi, [shared_va]
    call xen_time
    cmp edx, [start_ns + 4]
    jb mw_wait
    ja mw_begin
    cmp eax, [start_ns]
    jb mw_wait
mw_begin:
    mov [begin_ns], eax
    mov [begin_ns + 4], edx
mw_count:
    call chunk
    inc dword ptr [chunks]
    cmp edx, [reference]
    je mw_same
    inc dword ptr [bad_chunks]
mw_same:
    mov esi, [shared_va]
    call xen_time
    cmp edx, [end_ns + 4]
    jb mw_count
    ja mw_end
    cmp eax, [end_ns]
    jb mw_count
mw_end:
    mov ecx, 1000
    div ecx                       # ns -> us (system time < 2^32 us: about 71 minutes)
    mov [end_us], eax
    mov eax, [begin_ns]
    mov edx, [begin_ns + 4]
    div ecx
    mov esi, t_begin
    call report
    mov eax, [end_us]
    mov esi, t_end
    call report
    mov eax, [chunks]
    mov esi, t_chunks
    call report
    mov eax, [reference]
    mov esi, t_checksum
    call report
    mov eax, [bad_chunks]
    mov esi, t_bad
    call report
    ret

# chunk -> EDX = checksum: CHUNK iterations of the spin loop from a fixed state.
chunk:
    mov ecx, CHUNK
    xor eax, eax
    xor edx, edx
chunk_loop:
    add eax, ecx
    xor edx, eax
    dec ecx
    jnz chunk_loop
chunk_done:
    ret

t_begin: .asciz "begin_us"
t_end: .asciz "end_us"
t_chunks: .asciz "chunks"
t_checksum: .asciz "chunk_checksum"
t_bad: .asciz "bad_chunks"
.align 4
start_ns: .long 0, 0
end_ns: .long 0, 0
begin_ns: .long 0, 0
end_us: .long 0
reference: .long 0
chunks: .long 0
bad_chunks: .long 0
.align 4096
shinfo_page: .space 4096
.space 4096
boot_stack_top:
