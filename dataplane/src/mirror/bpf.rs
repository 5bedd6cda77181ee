//! A classic BPF interpreter for mirror filters.
//!
//! The control plane compiles a tcpdump expression with libpcap
//! (`pcap_compile` for Ethernet) and hands the instructions over; the
//! dataplane runs them here, without linking libpcap and without `unsafe`.
//! Every opcode libpcap emits is covered (loads, stores, ALU, jumps,
//! returns, `tax`/`txa`). As in the kernel, a load past the end of the frame
//! ends the program with "no match" (0), and so does a division by zero, a
//! jump out of the program or an unknown opcode: a broken program never
//! panics and never matches by accident.
//!
//! ```
//! use podswitch_dataplane::mirror::bpf::{Insn, Program};
//! // `ether proto 0x0806` (ARP), as `tcpdump -dd` prints it.
//! let prog = Program::new(vec![
//!     Insn::new(0x28, 0, 0, 12),
//!     Insn::new(0x15, 0, 1, 0x0806),
//!     Insn::new(0x06, 0, 0, 262144),
//!     Insn::new(0x06, 0, 0, 0),
//! ]).unwrap();
//! let mut arp = [0u8; 42];
//! arp[12..14].copy_from_slice(&[0x08, 0x06]);
//! assert_eq!(prog.run(&arp), 262144);
//! assert_eq!(prog.run(&[0u8; 60]), 0);
//! ```

/// Most instructions a program may have (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;
/// Scratch memory words (`BPF_MEMWORDS`).
const MEM_WORDS: usize = 16;

/// One instruction: `struct bpf_insn`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Insn {
    /// Opcode (class | size/op | mode/source).
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Generic field (constant, offset).
    pub k: u32,
}

impl Insn {
    /// An instruction from its four fields.
    pub const fn new(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
        Insn { code, jt, jf, k }
    }
}

/// libpcap's program for `tcp port 80` on Ethernet (`tcpdump -dd 'tcp port 80'`,
/// libpcap 1.10): a known program for tests and benchmarks.
pub const TCP_PORT_80: [Insn; 20] = [
    Insn::new(0x28, 0, 0, 0x0000000c),
    Insn::new(0x15, 0, 6, 0x000086dd),
    Insn::new(0x30, 0, 0, 0x00000014),
    Insn::new(0x15, 0, 15, 0x00000006),
    Insn::new(0x28, 0, 0, 0x00000036),
    Insn::new(0x15, 12, 0, 0x00000050),
    Insn::new(0x28, 0, 0, 0x00000038),
    Insn::new(0x15, 10, 11, 0x00000050),
    Insn::new(0x15, 0, 10, 0x00000800),
    Insn::new(0x30, 0, 0, 0x00000017),
    Insn::new(0x15, 0, 8, 0x00000006),
    Insn::new(0x28, 0, 0, 0x00000014),
    Insn::new(0x45, 6, 0, 0x00001fff),
    Insn::new(0xb1, 0, 0, 0x0000000e),
    Insn::new(0x48, 0, 0, 0x0000000e),
    Insn::new(0x15, 2, 0, 0x00000050),
    Insn::new(0x48, 0, 0, 0x00000010),
    Insn::new(0x15, 0, 1, 0x00000050),
    Insn::new(0x6, 0, 0, 0x00040000),
    Insn::new(0x6, 0, 0, 0x00000000),
];

/// Why a program was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BpfError {
    /// No instruction at all.
    #[error("the filter program is empty")]
    Empty,
    /// Longer than [`MAX_INSNS`].
    #[error("the filter program has {0} instructions, more than {MAX_INSNS}")]
    TooLong(usize),
    /// An opcode this interpreter does not know.
    #[error("instruction {index}: unknown opcode {code:#06x}")]
    UnknownOpcode {
        /// Instruction number.
        index: usize,
        /// The opcode.
        code: u16,
    },
    /// A jump that leaves the program.
    #[error("instruction {0}: jump out of the program")]
    JumpOutOfRange(usize),
    /// A scratch memory slot out of range.
    #[error("instruction {0}: scratch memory index out of range")]
    BadMemIndex(usize),
    /// The last instruction is not a return (execution could fall off the end).
    #[error("the filter program does not end with a return")]
    NoFinalReturn,
}

// Instruction classes.
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const STX: u16 = 0x03;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;
// Load sizes.
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
// Load modes.
const IMM: u16 = 0x00;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MEM: u16 = 0x60;
const LEN: u16 = 0x80;
const MSH: u16 = 0xa0;
// ALU and jump operations.
const ADD: u16 = 0x00;
const SUB: u16 = 0x10;
const MUL: u16 = 0x20;
const DIV: u16 = 0x30;
const OR: u16 = 0x40;
const AND: u16 = 0x50;
const LSH: u16 = 0x60;
const RSH: u16 = 0x70;
const NEG: u16 = 0x80;
const MOD: u16 = 0x90;
const XOR: u16 = 0xa0;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JGT: u16 = 0x20;
const JGE: u16 = 0x30;
const JSET: u16 = 0x40;
// Sources.
const X: u16 = 0x08;
const RET_A: u16 = 0x10;
const TAX: u16 = 0x00;
const TXA: u16 = 0x80;

/// A checked program: every opcode known, every jump and memory index in range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    insns: Box<[Insn]>,
    /// The same program decoded once, so that running it is one dispatch per instruction.
    ops: Box<[Op]>,
}

impl Program {
    /// Checks `insns` once so that [`Program::run`] needs no checks but the packet's bounds.
    pub fn new(insns: Vec<Insn>) -> Result<Program, BpfError> {
        if insns.is_empty() {
            return Err(BpfError::Empty);
        }
        if insns.len() > MAX_INSNS {
            return Err(BpfError::TooLong(insns.len()));
        }
        for (i, insn) in insns.iter().enumerate() {
            check(i, insn, insns.len())?;
        }
        if insns.last().is_some_and(|i| i.code & 0x07 != RET) {
            return Err(BpfError::NoFinalReturn);
        }
        let ops = insns.iter().map(decode).collect();
        Ok(Program {
            insns: insns.into_boxed_slice(),
            ops,
        })
    }

    /// The instructions.
    pub fn insns(&self) -> &[Insn] {
        &self.insns
    }

    /// Runs the program over `packet`: the number of bytes to keep, 0 for no match.
    pub fn run(&self, packet: &[u8]) -> u32 {
        run(&self.ops, packet).unwrap_or(0)
    }

    /// True when the program accepts `packet`.
    #[inline]
    pub fn matches(&self, packet: &[u8]) -> bool {
        self.run(packet) != 0
    }
}

fn check(i: usize, insn: &Insn, len: usize) -> Result<(), BpfError> {
    let unknown = || BpfError::UnknownOpcode {
        index: i,
        code: insn.code,
    };
    let mem = |k: u32| {
        if (k as usize) < MEM_WORDS {
            Ok(())
        } else {
            Err(BpfError::BadMemIndex(i))
        }
    };
    let code = insn.code;
    match code & 0x07 {
        LD => match (code & 0xe0, code & 0x18) {
            (IMM | LEN, W) => Ok(()),
            (ABS | IND, W | H | B) => Ok(()),
            (MEM, W) => mem(insn.k),
            _ => Err(unknown()),
        },
        LDX => match (code & 0xe0, code & 0x18) {
            (IMM | LEN, W) => Ok(()),
            (MEM, W) => mem(insn.k),
            (MSH, B) => Ok(()),
            _ => Err(unknown()),
        },
        ST | STX if code & !0x07 == 0 => mem(insn.k),
        ALU => match code & 0xf0 {
            ADD | SUB | MUL | DIV | OR | AND | LSH | RSH | MOD | XOR if code & !0xf8 == ALU => {
                Ok(())
            }
            NEG if code == ALU | NEG => Ok(()),
            _ => Err(unknown()),
        },
        JMP => check_jump(i, insn, len).ok_or_else(unknown)?,
        RET => match code & 0x18 {
            0x00 | RET_A if code & !0x18 == RET => Ok(()),
            _ => Err(unknown()),
        },
        MISC => match code & 0xf8 {
            TAX | TXA => Ok(()),
            _ => Err(unknown()),
        },
        _ => Err(unknown()),
    }
}

/// Checks jump `insn` at index `i` of a program of `len` instructions:
/// `None` for an unknown jump opcode, else whether its targets are inside.
fn check_jump(i: usize, insn: &Insn, len: usize) -> Option<Result<(), BpfError>> {
    let rest = len - i - 1;
    let code = insn.code;
    let inside = match code & 0xf0 {
        JA if code == JMP | JA => (insn.k as usize) < rest,
        JEQ | JGT | JGE | JSET if code & !0xf8 == JMP => {
            usize::from(insn.jt) < rest && usize::from(insn.jf) < rest
        }
        _ => return None,
    };
    Some(if inside {
        Ok(())
    } else {
        Err(BpfError::JumpOutOfRange(i))
    })
}

/// Loads `size` bytes big-endian at `offset`; `None` past the end.
#[inline]
fn load(packet: &[u8], offset: u32, size: u16) -> Option<u32> {
    let at = usize::try_from(offset).ok()?;
    match size {
        W => {
            let b = packet.get(at..at.checked_add(4)?)?;
            Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
        H => {
            let b = packet.get(at..at.checked_add(2)?)?;
            Some(u32::from(u16::from_be_bytes([b[0], b[1]])))
        }
        _ => packet.get(at).map(|&b| u32::from(b)),
    }
}

/// A checked instruction, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    LdAbs(u16, u32),
    LdInd(u16, u32),
    LdImm(u32),
    LdLen,
    LdMem(usize),
    LdxImm(u32),
    LdxLen,
    LdxMem(usize),
    LdxMsh(u32),
    St(usize),
    Stx(usize),
    AluK(u16, u32),
    AluX(u16),
    Neg,
    Ja(u32),
    JmpK(u16, u32, u8, u8),
    JmpX(u16, u8, u8),
    RetK(u32),
    RetA,
    Tax,
    Txa,
}

/// Decodes an instruction [`check`] accepted.
fn decode(insn: &Insn) -> Op {
    let (code, k) = (insn.code, insn.k);
    let size = code & 0x18;
    let op = code & 0xf0;
    match code & 0x07 {
        LD => match code & 0xe0 {
            IMM => Op::LdImm(k),
            LEN => Op::LdLen,
            ABS => Op::LdAbs(size, k),
            IND => Op::LdInd(size, k),
            _ => Op::LdMem(k as usize),
        },
        LDX => match code & 0xe0 {
            IMM => Op::LdxImm(k),
            LEN => Op::LdxLen,
            MSH => Op::LdxMsh(k),
            _ => Op::LdxMem(k as usize),
        },
        ST => Op::St(k as usize),
        STX => Op::Stx(k as usize),
        ALU if op == NEG => Op::Neg,
        ALU if code & X != 0 => Op::AluX(op),
        ALU => Op::AluK(op, k),
        JMP if op == JA => Op::Ja(k),
        JMP if code & X != 0 => Op::JmpX(op, insn.jt, insn.jf),
        JMP => Op::JmpK(op, k, insn.jt, insn.jf),
        RET if code & RET_A != 0 => Op::RetA,
        RET => Op::RetK(k),
        _ if code & TXA != 0 => Op::Txa,
        _ => Op::Tax,
    }
}

#[inline(always)]
fn alu(op: u16, a: u32, operand: u32) -> Option<u32> {
    Some(match op {
        ADD => a.wrapping_add(operand),
        SUB => a.wrapping_sub(operand),
        MUL => a.wrapping_mul(operand),
        DIV => a.checked_div(operand)?,
        MOD => a.checked_rem(operand)?,
        OR => a | operand,
        AND => a & operand,
        XOR => a ^ operand,
        LSH => a.checked_shl(operand).unwrap_or(0),
        _ => a.checked_shr(operand).unwrap_or(0),
    })
}

#[inline(always)]
fn condition(op: u16, a: u32, operand: u32) -> bool {
    match op {
        JEQ => a == operand,
        JGT => a > operand,
        JGE => a >= operand,
        _ => a & operand != 0,
    }
}

/// Runs a checked, decoded program; `None` ends it with no match.
fn run(ops: &[Op], packet: &[u8]) -> Option<u32> {
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; MEM_WORDS];
    let len = u32::try_from(packet.len()).unwrap_or(u32::MAX);
    let mut pc = 0usize;
    loop {
        let op = *ops.get(pc)?;
        pc += 1;
        match op {
            Op::LdAbs(size, k) => a = load(packet, k, size)?,
            Op::LdInd(size, k) => a = load(packet, x.checked_add(k)?, size)?,
            Op::LdImm(k) => a = k,
            Op::LdLen => a = len,
            Op::LdMem(i) => a = *mem.get(i)?,
            Op::LdxImm(k) => x = k,
            Op::LdxLen => x = len,
            Op::LdxMem(i) => x = *mem.get(i)?,
            Op::LdxMsh(k) => x = (load(packet, k, B)? & 0x0f) << 2,
            Op::St(i) => *mem.get_mut(i)? = a,
            Op::Stx(i) => *mem.get_mut(i)? = x,
            Op::AluK(op, k) => a = alu(op, a, k)?,
            Op::AluX(op) => a = alu(op, a, x)?,
            Op::Neg => a = a.wrapping_neg(),
            Op::Ja(k) => pc = pc.checked_add(k as usize)?,
            Op::JmpK(op, k, jt, jf) => {
                pc += usize::from(if condition(op, a, k) { jt } else { jf });
            }
            Op::JmpX(op, jt, jf) => {
                pc += usize::from(if condition(op, a, x) { jt } else { jf });
            }
            Op::RetK(k) => return Some(k),
            Op::RetA => return Some(a),
            Op::Tax => x = a,
            Op::Txa => a = x,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(raw: &[(u16, u8, u8, u32)]) -> Program {
        Program::new(
            raw.iter()
                .map(|&(c, jt, jf, k)| Insn::new(c, jt, jf, k))
                .collect(),
        )
        .unwrap()
    }

    /// An Ethernet/IPv4/TCP frame from port `sport` to `dport`.
    fn tcp_frame(sport: u16, dport: u16, frag: u16) -> Vec<u8> {
        let mut f = vec![0u8; 54];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[20..22].copy_from_slice(&frag.to_be_bytes());
        f[23] = 6;
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    #[test]
    fn tcp_port_80() {
        let p = Program::new(TCP_PORT_80.to_vec()).unwrap();
        assert_eq!(p.run(&tcp_frame(40000, 80, 0)), 0x40000);
        assert_eq!(p.run(&tcp_frame(80, 40000, 0)), 0x40000);
        assert_eq!(p.run(&tcp_frame(40000, 81, 0)), 0);
        // A non-first fragment has no ports.
        assert_eq!(p.run(&tcp_frame(40000, 80, 5)), 0);
        let mut udp = tcp_frame(40000, 80, 0);
        udp[23] = 17;
        assert_eq!(p.run(&udp), 0);
        // Truncated before the ports: the load fails, no match.
        assert_eq!(p.run(&tcp_frame(40000, 80, 0)[..35]), 0);
        assert_eq!(p.run(&[]), 0);
    }

    #[test]
    fn alu_jumps_memory_and_misc() {
        // A = len; M[3] = A; X = 7; A = A * X; A = A - 1; A = A / X (… = len - 1/7 …)
        let p = program(&[
            (LD | W | LEN, 0, 0, 0),
            (ST, 0, 0, 3),
            (LDX | W | IMM, 0, 0, 7),
            (ALU | MUL | X, 0, 0, 0),
            (ALU | ADD, 0, 0, 14),
            (ALU | DIV | X, 0, 0, 0),
            (ALU | MOD, 0, 0, 100),
            (ALU | XOR, 0, 0, 1),
            (ALU | OR, 0, 0, 0x100),
            (ALU | AND, 0, 0, 0x1ff),
            (ALU | LSH, 0, 0, 1),
            (ALU | RSH, 0, 0, 1),
            (MISC | TAX, 0, 0, 0),
            (LD | W | MEM, 0, 0, 3),
            (ALU | SUB | X, 0, 0, 0),
            (ALU | NEG, 0, 0, 0),
            (MISC | TXA, 0, 0, 0),
            (STX, 0, 0, 4),
            (LDX | W | MEM, 0, 0, 4),
            (JMP | JGT | X, 0, 1, 0),
            (JMP | JA, 0, 0, 1),
            (RET | RET_A, 0, 0, 0),
            (RET, 0, 0, 9),
        ]);
        // len 10: 10*7+14 = 84, /7 = 12, %100 = 12, ^1 = 13, |0x100 = 0x10d,
        // &0x1ff = 0x10d, <<1 >>1 = 0x10d; X = 0x10d; A = 10 - 0x10d, neg = 0x103;
        // A = X = 0x10d; JGT X (0x10d > 0x10d false) → RET A.
        assert_eq!(p.run(&[0u8; 10]), 0x10d);
    }

    #[test]
    fn loads_and_msh() {
        let p = program(&[
            (LDX | B | MSH, 0, 0, 0),
            (LD | B | IND, 0, 0, 0),
            (JMP | JSET, 0, 1, 0x80),
            (RET, 0, 0, 1),
            (LD | H | ABS, 0, 0, 1),
            (JMP | JGE, 0, 1, 0x4500),
            (RET, 0, 0, 2),
            (RET, 0, 0, 0),
        ]);
        // X = (0x45 & 0xf) * 4 = 20; byte 20 = 0x80 → 1.
        let mut pkt = [0u8; 21];
        pkt[0] = 0x45;
        pkt[20] = 0x80;
        assert_eq!(p.run(&pkt), 1);
        pkt[20] = 0;
        pkt[1] = 0x45;
        assert_eq!(p.run(&pkt), 2);
        // Indirect load past the end: no match.
        assert_eq!(p.run(&pkt[..20]), 0);
    }

    #[test]
    fn division_by_zero_is_no_match() {
        let p = program(&[
            (LDX | W | IMM, 0, 0, 0),
            (ALU | DIV | X, 0, 0, 0),
            (RET, 0, 0, 5),
        ]);
        assert_eq!(p.run(&[1, 2, 3]), 0);
    }

    #[test]
    fn bad_programs_are_refused() {
        assert_eq!(Program::new(vec![]), Err(BpfError::Empty));
        assert_eq!(
            Program::new(vec![Insn::new(JMP | JEQ, 5, 0, 0), Insn::new(RET, 0, 0, 0)]),
            Err(BpfError::JumpOutOfRange(0))
        );
        assert_eq!(
            Program::new(vec![
                Insn::new(LD | W | MEM, 0, 0, 16),
                Insn::new(RET, 0, 0, 0)
            ]),
            Err(BpfError::BadMemIndex(0))
        );
        assert!(matches!(
            Program::new(vec![Insn::new(0xff, 0, 0, 0)]),
            Err(BpfError::UnknownOpcode { .. })
        ));
        assert_eq!(
            Program::new(vec![Insn::new(LD | W | IMM, 0, 0, 1)]),
            Err(BpfError::NoFinalReturn)
        );
        assert!(matches!(
            Program::new(vec![Insn::new(RET, 0, 0, 0); MAX_INSNS + 1]),
            Err(BpfError::TooLong(_))
        ));
    }

    proptest::proptest! {
        /// Any checked program runs to an answer on any packet without panicking.
        #[test]
        fn never_panics(raw in proptest::collection::vec((0u16..0x100, 0u8..4, 0u8..4, proptest::prelude::any::<u32>()), 1..24),
                        packet in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            let mut insns: Vec<Insn> = raw.into_iter().map(|(c, jt, jf, k)| Insn::new(c, jt, jf, k % 64)).collect();
            insns.push(Insn::new(RET | RET_A, 0, 0, 0));
            if let Ok(p) = Program::new(insns) {
                let _ = p.run(&packet);
            }
        }
    }
}
