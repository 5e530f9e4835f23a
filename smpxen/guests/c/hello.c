/*
 * hello.c -- a minimal freestanding Xen 2.0 x86_32 guest.
 *
 * Prints, through console_io(CONSOLEIO_write):
 *   "hello from C guest: <start_info cmd_line> on pcpu <N>"
 *   "nr_pages=<start_info nr_pages>"
 * where N is the initial APIC id (CPUID leaf 1, EBX bits 31..24), which is how
 * smpxen tells a guest which physical CPU runs it. Then it shuts itself down
 * (sched_op SCHEDOP_shutdown, reason SHUTDOWN_poweroff) and, should that
 * return, yields forever. Events stay masked as Xen left them: this guest
 * takes no upcalls. No libc.
 */
#include "xen.h"

#define LINE_MAX 512

static char line[LINE_MAX];
static unsigned int line_len;

static void put_char(char c)
{
    if (line_len < LINE_MAX - 1)        /* keep room for the newline */
        line[line_len++] = c;
}

static void put_str(const char *s)
{
    while (*s)
        put_char(*s++);
}

/* At most n bytes of s, stopping at NUL (cmd_line may be unterminated). */
static void put_strn(const char *s, unsigned int n)
{
    unsigned int i;
    for (i = 0; i < n && s[i]; i++)
        put_char(s[i]);
}

static void put_udec(unsigned long v)
{
    char digits[10];                    /* 2^32-1 has 10 digits */
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        put_char(digits[--n]);
}

static void flush_line(void)
{
    line[line_len++] = '\n';
    HYPERVISOR_console_io(CONSOLEIO_write, (int)line_len, line);
    line_len = 0;
}

static unsigned int initial_apic_id(void)
{
    unsigned int eax = 1, ebx, ecx = 0, edx;
    __asm__ __volatile__ ("cpuid"
                          : "+a" (eax), "=b" (ebx), "+c" (ecx), "=d" (edx));
    return ebx >> 24;
}

void start_kernel(start_info_t *si) __attribute__((noreturn, used));

void start_kernel(start_info_t *si)
{
    put_str("hello from C guest: ");
    put_strn((const char *)si->cmd_line, MAX_CMDLINE);
    put_str(" on pcpu ");
    put_udec(initial_apic_id());
    flush_line();

    put_str("nr_pages=");
    put_udec(si->nr_pages);
    flush_line();

    HYPERVISOR_shutdown(SHUTDOWN_poweroff);
    for (;;)
        HYPERVISOR_yield();
}
