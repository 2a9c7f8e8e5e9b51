//! Boot code: the multiboot v1 header, the 32-bit multiboot entry `_start32`
//! (builds page tables and enters long mode), the 64-bit entry `_start64`
//! (direct ELF64 boot, and the common path), the runtime GDT and the stacks.
//!
//! Both entries end in `rt_bsp_main(mbi, magic)` with the runtime GDT loaded,
//! the BSP stack set and `.bss` zeroed.

use crate::smp::{MAX_CPUS, STACK_SIZE};

/// Selector of the 64-bit code segment.
pub const KERNEL_CS: u16 = 0x08;
/// Selector of the flat data segment (used in 32-bit and 64-bit mode).
pub const KERNEL_DS: u16 = 0x10;
/// Selector of the 32-bit code segment (used by the AP trampoline).
pub const CODE32_CS: u16 = 0x18;

core::arch::global_asm!(
    r#"
    .pushsection .multiboot, "a"
    .balign 4
    .global rt_multiboot_header
rt_multiboot_header:
    .long 0x1BADB002
    .long 0x00000003
    .long -(0x1BADB002 + 0x00000003)
    .popsection

    /* GDT: null, 64-bit code (0x08), flat data (0x10), 32-bit code (0x18).
       Accessed bits are preset so the CPU never writes to the table. */
    .pushsection .rodata.rt_gdt, "a"
    .balign 16
    .global rt_gdt
rt_gdt:
    .quad 0
    .quad 0x00AF9B000000FFFF
    .quad 0x00CF93000000FFFF
    .quad 0x00CF9B000000FFFF
rt_gdt_end:
    .balign 16
    .global rt_gdt_ptr
rt_gdt_ptr:
    .word rt_gdt_end - rt_gdt - 1
    .quad rt_gdt
    .popsection

    /* Page tables of the 32-bit entry: PML4, PDPT, 4 page directories. */
    .pushsection .boot_pt, "aw", @nobits
    .balign 4096
    .global rt_boot_pt
rt_boot_pt:
    .skip 6 * 4096
    .popsection

    .pushsection .stacks, "aw", @nobits
    .balign 4096
    .global rt_stacks
rt_stacks:
    .skip {max_cpus} * {stack_size}
    .popsection

    .pushsection .text.boot, "ax"
    .code32
    .global _start32
_start32:
    /* Multiboot: protected mode, paging off, EAX = magic, EBX = mbi.
       EAX and EBX are preserved up to _start64 (rdmsr clobbers EAX/EDX,
       so the magic is kept in ESI). */
    cli
    cld
    movl %eax, %esi
    movl $rt_boot_pt, %edi
    xorl %eax, %eax
    movl $(6 * 1024), %ecx
    rep stosl
    movl $rt_boot_pt, %edi
    leal 0x1003(%edi), %eax
    movl %eax, (%edi)
    leal 0x2003(%edi), %eax
    movl %eax, 0x1000(%edi)
    addl $0x1000, %eax
    movl %eax, 0x1008(%edi)
    addl $0x1000, %eax
    movl %eax, 0x1010(%edi)
    addl $0x1000, %eax
    movl %eax, 0x1018(%edi)
    leal 0x2000(%edi), %edx
    movl $0x83, %eax
    movl $2048, %ecx
2:
    movl %eax, (%edx)
    addl $0x200000, %eax
    addl $8, %edx
    decl %ecx
    jnz 2b
    movl %edi, %cr3
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax
    movl %eax, %cr0
    lgdt rt_gdt_ptr
    movl %esi, %eax
    ljmp $0x08, $_start64

    .code64
    .global _start64
_start64:
    /* Long mode, EAX = magic, EBX = mbi (physical, below 4 GiB). */
    cli
    cld
    movl %ebx, %r12d
    movl %eax, %r13d
    lgdt rt_gdt_ptr(%rip)
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %eax, %fs
    movl %eax, %gs
    leaq rt_stacks(%rip), %rsp
    addq ${stack_size}, %rsp
    pushq $0x08
    leaq 3f(%rip), %rax
    pushq %rax
    lretq
3:
    leaq __bss_start(%rip), %rdi
    leaq __bss_end(%rip), %rcx
    subq %rdi, %rcx
    xorl %eax, %eax
    rep stosb
    movq %r12, %rdi
    movq %r13, %rsi
    xorl %ebp, %ebp
    call rt_bsp_main
4:
    cli
    hlt
    jmp 4b

    /* APs arrive here from the trampoline, in long mode on the BSP's CR3. */
    .global rt_ap_entry64
rt_ap_entry64:
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %eax, %fs
    movl %eax, %gs
    movl $1, %eax
    cpuid
    shrl $24, %ebx
    cmpl ${max_cpus}, %ebx
    jae 5f
    leal 1(%ebx), %eax
    imull ${stack_size}, %eax
    leaq rt_stacks(%rip), %rsp
    addq %rax, %rsp
    movl %ebx, %edi
    xorl %ebp, %ebp
    call rt_ap_main
5:
    cli
    hlt
    jmp 5b
    .popsection
"#,
    max_cpus = const MAX_CPUS,
    stack_size = const STACK_SIZE,
    options(att_syntax)
);

/// Address of the runtime GDT pointer (10-byte `lgdt` operand).
pub fn gdt_ptr_addr() -> u64 {
    extern "C" {
        static rt_gdt_ptr: u8;
    }
    core::ptr::addr_of!(rt_gdt_ptr) as u64
}
