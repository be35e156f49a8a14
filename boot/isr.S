/*
 * isr.S - entry stubs for the 32 CPU exception vectors, and for the two
 * interrupts the kernel takes (the LAPIC timer and its spurious vector).
 *
 * Every stub leaves the same frame (struct trap_frame in lib/trap.h): the
 * general registers, then the vector and an error code (0 for vectors where
 * the CPU pushes none), then what the CPU pushed. All of them end in
 * trap_dispatch(), which reports and ends the run: nothing here returns
 * from an exception, because the test kernel treats every one as fatal.
 *
 * Alignment: the CPU aligns RSP to 16 before pushing its 5 words; with
 * error code, vector and 15 registers the total is 22 words, so RSP is
 * 16-byte aligned at the call, as the ABI requires.
 */

    .code64
    .section .text

/* has_error is 1 for the vectors where the CPU pushes an error code
 * itself: 8, 10-14, 17, 21, 29 and 30. */
.macro exception_stub vector, has_error
    .balign 16
exception_stub_\vector:
    .if \has_error == 0
    pushq $0
    .endif
    pushq $\vector
    jmp exception_common
.endm

exception_stub 0, 0
exception_stub 1, 0
exception_stub 2, 0
exception_stub 3, 0
exception_stub 4, 0
exception_stub 5, 0
exception_stub 6, 0
exception_stub 7, 0
exception_stub 8, 1
exception_stub 9, 0
exception_stub 10, 1
exception_stub 11, 1
exception_stub 12, 1
exception_stub 13, 1
exception_stub 14, 1
exception_stub 15, 0
exception_stub 16, 0
exception_stub 17, 1
exception_stub 18, 0
exception_stub 19, 0
exception_stub 20, 0
exception_stub 21, 1
exception_stub 22, 0
exception_stub 23, 0
exception_stub 24, 0
exception_stub 25, 0
exception_stub 26, 0
exception_stub 27, 0
exception_stub 28, 0
exception_stub 29, 1
exception_stub 30, 1
exception_stub 31, 0

exception_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    cld
    movq %rsp, %rdi
    call trap_dispatch
    /* trap_dispatch does not return; stop here if it ever does. */
1:  cli
    hlt
    jmp 1b

/*
 * The LAPIC timer's interrupt: saves the registers a C call may change,
 * calls smp_timer_interrupt() (which acknowledges it), and returns to the
 * interrupted code. The CPU aligned RSP to 16 before pushing its 5 words;
 * with the 9 saved here RSP is 16-byte aligned again at the call.
 */
    .balign 16
    .globl timer_interrupt_stub
timer_interrupt_stub:
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    cld
    call smp_timer_interrupt
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rax
    iretq

/* The LAPIC's spurious vector: nothing to acknowledge, nothing to do. */
    .balign 16
    .globl spurious_interrupt_stub
spurious_interrupt_stub:
    iretq

    .section .rodata
    .balign 8
    .globl exception_stubs
exception_stubs:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exception_stub_\v
    .endr

    .section .note.GNU-stack, "", @progbits
