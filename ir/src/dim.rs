//! Tensor dimensions: static integers or symbolic expressions over named symbols (`s0`, `s0 + 1`).
//!
//! A [`Dim`] is a polynomial with integer coefficients over *atoms*: a symbol, or an opaque
//! floor division / modulo that cannot be simplified further. The polynomial form is canonical,
//! so two dims compare equal exactly when their expressions are the same after normalisation
//! (`s0 + 1 == 1 + s0`, `2*s0 == s0 + s0`).
//!
//! Dims arrive from files and the wire as text, so [`Dim::parse`] is bounded: the text's length
//! ([`MAX_DIM_TEXT`]), its parentheses ([`MAX_DIM_DEPTH`]), how deep floor divisions and modulos
//! nest in the result ([`MAX_DIM_ATOM_DEPTH`]) and the size of the result ([`MAX_DIM_NODES`],
//! checked before each product is computed) are limited, and a sum is built in one pass however
//! many terms it has. Every recursive walk over a dim is as deep as its atoms nest, so a parsed
//! dim cannot overflow the stack; [`Dim::fits_limits`] lets other producers (op inference) hold
//! the dims they build to the same limits.
//!
//! A constant is stored inline (no allocation; a `Dim` is 16 bytes) and only a symbolic dim
//! holds a boxed list of terms, so a decoded dim costs a small multiple of its encoded size.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest dim text [`Dim::parse`] reads, in bytes. Real dims are tens of bytes
/// (`(s0 - 1)//2 + 1`); the limit is checked before any parsing.
pub const MAX_DIM_TEXT: usize = 4096;

/// The deepest parenthesis nesting [`Dim::parse`] accepts (the parser recurses only here).
pub const MAX_DIM_DEPTH: usize = 64;

/// The deepest floor divisions or modulos may nest inside each other in a parsed dim, however
/// the text spells them (`s0//s1//s1` nests two deep without a parenthesis). Every recursive walk
/// over a dim (printing, comparing, cloning, dropping) goes this deep at most. Half of
/// [`MAX_DIM_DEPTH`], because the canonical text of a nested atom can take two parentheses per
/// level, and that text must parse back.
pub const MAX_DIM_ATOM_DEPTH: usize = MAX_DIM_DEPTH / 2;

/// The largest dim [`Dim::parse`] builds, in nodes: one per term plus one per atom, counted
/// through nested atoms (`s0*s1 + 1` is 4). Checked before each product or power is computed, so
/// a short text such as `(a+b)*(c+d)*(e+f)*…` cannot expand into millions of terms.
pub const MAX_DIM_NODES: usize = 4096;

/// An indivisible factor of a monomial.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Atom {
    /// A named symbol such as `s0`.
    Sym(String),
    /// `floor(a / b)` that could not be simplified.
    FloorDiv(Box<Dim>, Box<Dim>),
    /// `a mod b` (Python semantics: the sign of `b`) that could not be simplified.
    Mod(Box<Dim>, Box<Dim>),
}

/// A product of atoms, kept sorted; the empty monomial is the constant term.
type Monomial = Box<[Atom]>;

/// A monomial and its (non-zero) coefficient.
type Term = (Monomial, i64);

/// A dimension: an integer polynomial over symbols. Constants are the polynomial with only the
/// empty monomial.
///
/// Equality and hashing follow the canonical representation; ordering is the lexicographic
/// order of the (monomial, coefficient) terms sorted by monomial, the constant term first.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Dim(Repr);

/// The canonical representation: `Const` exactly when there is no symbolic term (so a constant
/// never allocates); otherwise `Poly`, the non-zero terms sorted by monomial (the constant term,
/// whose monomial is empty, first) with at least one symbolic term.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Const(i64),
    Poly(Box<[Term]>),
}

/// Errors from parsing or evaluating a symbolic dim.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DimError {
    /// The text is not a dim expression this parser understands.
    #[error("cannot parse dim expression `{text}`: {reason}")]
    Parse { text: String, reason: String },
    /// The text is longer than [`MAX_DIM_TEXT`]; nothing was parsed.
    #[error("dim expression of {len} bytes exceeds the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    /// Parentheses nest deeper than [`MAX_DIM_DEPTH`], or floor divisions and modulos deeper
    /// than [`MAX_DIM_ATOM_DEPTH`] (`max` says which); `at` is the byte offset where the limit
    /// was crossed.
    #[error("dim expression nests deeper than {max} levels at byte {at}")]
    TooDeep { at: usize, max: usize },
    /// The expression would grow beyond [`MAX_DIM_NODES`] nodes (a product of sums, a power);
    /// `at` is the byte offset of the operand that would cross the limit.
    #[error("dim expression grows beyond {max} nodes at byte {at}")]
    TooLarge { at: usize, max: usize },
    /// The expression parses, but its canonical text (products expanded) is longer than
    /// [`MAX_DIM_TEXT`]: once written it could not be read back.
    #[error("dim expression's canonical form is longer than {max} bytes")]
    PrintsTooLong { max: usize },
    /// The expression uses a symbol that has no value in the binding.
    #[error("symbol `{0}` is not bound")]
    Unbound(String),
    /// Division or modulo by zero while evaluating.
    #[error("division by zero in `{0}`")]
    DivisionByZero(String),
    /// Arithmetic overflowed i64.
    #[error("integer overflow evaluating `{0}`")]
    Overflow(String),
}

/// Terms being collected: coefficients of equal monomials are added (saturating, in the order
/// they come), and [`TermSum::finish`] drops zeros and builds the canonical [`Dim`]. Every
/// symbolic dim is made here, so every dim is canonical.
#[derive(Default)]
struct TermSum {
    terms: BTreeMap<Monomial, i64>,
    /// Nodes of the terms whose coefficient is not zero (see [`MAX_DIM_NODES`]), kept exact as
    /// terms come so the parser can check the size of a sum as it grows.
    nodes: usize,
}

impl TermSum {
    fn add(&mut self, mono: Monomial, coef: i64) {
        let cost = mono_nodes(&mono);
        let t = self.terms.entry(mono).or_insert(0);
        let before = *t;
        *t = t.saturating_add(coef);
        match (before != 0, *t != 0) {
            (false, true) => self.nodes = self.nodes.saturating_add(cost),
            (true, false) => self.nodes -= cost,
            _ => {}
        }
    }

    /// Add `k * d`, each coefficient multiplied (saturating) before it is added.
    fn add_scaled(&mut self, d: &Dim, k: i64) {
        for (mono, coef) in d.terms() {
            self.add(mono.into(), coef.saturating_mul(k));
        }
    }

    /// Add `a * b`, term by term.
    fn add_product(&mut self, a: &Dim, b: &Dim) {
        for (m1, c1) in a.terms() {
            for (m2, c2) in b.terms() {
                self.add(sorted_product(m1, m2), c1.saturating_mul(c2));
            }
        }
    }

    fn finish(self) -> Dim {
        // BTreeMap order is the canonical order: the empty monomial (the constant) first.
        let terms: Vec<Term> = self.terms.into_iter().filter(|(_, c)| *c != 0).collect();
        match terms.as_slice() {
            [] => Dim::constant(0),
            [(mono, c)] if mono.is_empty() => Dim::constant(*c),
            _ => Dim(Repr::Poly(terms.into_boxed_slice())),
        }
    }
}

/// Nodes of one term: the term and its atoms, through nested atoms.
fn mono_nodes(mono: &[Atom]) -> usize {
    mono.iter().fold(1usize, |n, atom| {
        n.saturating_add(match atom {
            Atom::Sym(_) => 1,
            Atom::FloorDiv(a, b) | Atom::Mod(a, b) => 1usize.saturating_add(a.nodes()).saturating_add(b.nodes()),
        })
    })
}

impl Default for Dim {
    fn default() -> Dim {
        Dim::constant(0)
    }
}

impl Dim {
    /// A static dimension.
    pub fn constant(value: i64) -> Dim {
        Dim(Repr::Const(value))
    }

    /// A bare symbol such as `s0`.
    pub fn symbol(name: impl Into<String>) -> Dim {
        atom_dim(Atom::Sym(name.into()))
    }

    /// The value when the dim is static.
    pub fn as_const(&self) -> Option<i64> {
        match self.0 {
            Repr::Const(c) => Some(c),
            Repr::Poly(_) => None,
        }
    }

    /// True when the dim has no symbols.
    pub fn is_const(&self) -> bool {
        self.as_const().is_some()
    }

    /// The non-zero terms in canonical order: the constant (the empty monomial) first, then the
    /// symbolic terms sorted by monomial.
    fn terms(&self) -> impl Iterator<Item = (&[Atom], i64)> + '_ {
        let (constant, symbolic): (Option<i64>, &[Term]) = match &self.0 {
            Repr::Const(0) => (None, &[]),
            Repr::Const(c) => (Some(*c), &[]),
            Repr::Poly(terms) => (None, terms),
        };
        constant.map(|c| (&[][..], c)).into_iter().chain(symbolic.iter().map(|(m, c)| (&m[..], *c)))
    }

    /// How many non-zero terms.
    fn term_count(&self) -> usize {
        match &self.0 {
            Repr::Const(0) => 0,
            Repr::Const(_) => 1,
            Repr::Poly(terms) => terms.len(),
        }
    }

    /// The coefficient of one monomial (0 when absent).
    fn coef_of(&self, mono: &[Atom]) -> i64 {
        match &self.0 {
            Repr::Const(c) => {
                if mono.is_empty() {
                    *c
                } else {
                    0
                }
            }
            Repr::Poly(terms) => terms.binary_search_by(|(m, _)| (**m).cmp(mono)).map_or(0, |i| terms[i].1),
        }
    }

    /// Nodes: one per term plus one per atom, through nested atoms (see [`MAX_DIM_NODES`]).
    fn nodes(&self) -> usize {
        self.terms().fold(0usize, |n, (mono, _)| n.saturating_add(mono_nodes(mono)))
    }

    /// True when the dim is within the limits a parsed dim is held to: floor divisions and
    /// modulos nested at most [`MAX_DIM_ATOM_DEPTH`] deep, at most [`MAX_DIM_NODES`] nodes, and
    /// canonical text of at most [`MAX_DIM_TEXT`] bytes, so that its text reads back. The walks
    /// stop at the first level or byte past a limit, so this is safe on a dim of any size.
    pub fn fits_limits(&self) -> bool {
        // A constant prints in at most 24 bytes (`-9223372036854775807 - 1`); inference checks
        // every output dim, and most are constants.
        self.is_const()
            || (self.measure(0).is_some_and(|(nodes, _)| nodes <= MAX_DIM_NODES) && self.prints_within(MAX_DIM_TEXT))
    }

    /// True when the canonical text has at most `max` bytes; stops writing at `max + 1`.
    fn prints_within(&self, max: usize) -> bool {
        struct Budget(usize);
        impl fmt::Write for Budget {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0 = self.0.checked_sub(s.len()).ok_or(fmt::Error)?;
                Ok(())
            }
        }
        fmt::write(&mut Budget(max), format_args!("{self}")).is_ok()
    }

    /// (nodes, atom depth), or `None` once an atom nests deeper than [`MAX_DIM_ATOM_DEPTH`]
    /// (`level` is how deep this dim sits).
    fn measure(&self, level: usize) -> Option<(usize, usize)> {
        let (mut nodes, mut depth) = (0usize, 0usize);
        for (mono, _) in self.terms() {
            nodes = nodes.saturating_add(1);
            for atom in mono {
                match atom {
                    Atom::Sym(_) => nodes = nodes.saturating_add(1),
                    Atom::FloorDiv(a, b) | Atom::Mod(a, b) => {
                        if level >= MAX_DIM_ATOM_DEPTH {
                            return None;
                        }
                        let (na, da) = a.measure(level + 1)?;
                        let (nb, db) = b.measure(level + 1)?;
                        nodes = nodes.saturating_add(1).saturating_add(na).saturating_add(nb);
                        depth = depth.max(1 + da.max(db));
                    }
                }
            }
        }
        Some((nodes, depth))
    }

    /// Every symbol name used anywhere in the expression.
    pub fn symbols(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.collect_symbols(&mut out);
        out
    }

    fn collect_symbols(&self, out: &mut BTreeSet<String>) {
        for (mono, _) in self.terms() {
            for atom in mono {
                match atom {
                    Atom::Sym(s) => {
                        out.insert(s.clone());
                    }
                    Atom::FloorDiv(a, b) | Atom::Mod(a, b) => {
                        a.collect_symbols(out);
                        b.collect_symbols(out);
                    }
                }
            }
        }
    }

    /// Sum of two dims.
    pub fn add(&self, other: &Dim) -> Dim {
        if let (Some(a), Some(b)) = (self.as_const(), other.as_const()) {
            return Dim::constant(a.saturating_add(b));
        }
        let mut sum = TermSum::default();
        sum.add_scaled(self, 1);
        sum.add_scaled(other, 1);
        sum.finish()
    }

    /// Difference of two dims.
    pub fn sub(&self, other: &Dim) -> Dim {
        self.add(&other.scale(-1))
    }

    /// Multiply by an integer.
    pub fn scale(&self, k: i64) -> Dim {
        if let Some(a) = self.as_const() {
            return Dim::constant(a.saturating_mul(k));
        }
        let mut sum = TermSum::default();
        sum.add_scaled(self, k);
        sum.finish()
    }

    /// Product of two dims.
    pub fn mul(&self, other: &Dim) -> Dim {
        if let (Some(a), Some(b)) = (self.as_const(), other.as_const()) {
            return Dim::constant(a.saturating_mul(b));
        }
        let mut sum = TermSum::default();
        sum.add_product(self, other);
        sum.finish()
    }

    /// Exact division when `other` divides `self` term by term; `None` otherwise.
    pub fn div_exact(&self, other: &Dim) -> Option<Dim> {
        if other.as_const() == Some(0) {
            return None;
        }
        if self.as_const() == Some(0) {
            return Some(Dim::constant(0));
        }
        if other.term_count() == 1 {
            let (dm, dc) = other.terms().next()?;
            let mut sum = TermSum::default();
            for (m, c) in self.terms() {
                if c.checked_rem(dc)? != 0 {
                    return None;
                }
                sum.add(remove_factors(m, dm)?, c.checked_div(dc)?);
            }
            return Some(sum.finish());
        }
        // A polynomial divisor: accept only an integer multiple of it.
        let (m0, c0) = other.terms().next()?;
        let k_num = self.coef_of(m0);
        if k_num == 0 || k_num.checked_rem(c0)? != 0 {
            return None;
        }
        let k = k_num.checked_div(c0)?;
        (other.scale(k) == *self).then(|| Dim::constant(k))
    }

    /// Floor division (Python `//`), simplified where possible.
    pub fn floor_div(&self, other: &Dim) -> Dim {
        if let (Some(a), Some(b)) = (self.as_const(), other.as_const()) {
            if let Some(q) = py_floor_div(a, b) {
                return Dim::constant(q);
            }
        }
        if other.as_const() == Some(1) {
            return self.clone();
        }
        if let Some(q) = self.div_exact(other) {
            return q;
        }
        // `(x // b) // c = x // (b·c)` for positive constants b and c (two strided convolutions
        // in a row).
        if let Some(c) = other.as_const().filter(|c| *c > 0) {
            if let Some(([Atom::FloorDiv(x, b)], 1)) = self.terms().next().filter(|_| self.term_count() == 1) {
                if let Some(bc) = b.as_const().filter(|b| *b > 0).and_then(|b| b.checked_mul(c)) {
                    return x.floor_div(&Dim::constant(bc));
                }
            }
        }
        // `(d·k·X + r) // d = k·X + r // d` for integer X and a positive constant d: the terms
        // the divisor divides leave the floor (`(s - 10) // 5` is `s // 5 - 2`), so equal
        // quotients written differently compare equal.
        if let Some(d) = other.as_const().filter(|d| *d > 0) {
            let (mut whole, mut rest) = (TermSum::default(), TermSum::default());
            for (mono, coef) in self.terms() {
                if coef % d == 0 {
                    whole.add(mono.into(), coef / d);
                } else {
                    rest.add(mono.into(), coef);
                }
            }
            if !whole.terms.is_empty() && !rest.terms.is_empty() {
                return whole.finish().add(&rest.finish().floor_div(other));
            }
        }
        atom_dim(Atom::FloorDiv(Box::new(self.clone()), Box::new(other.clone())))
    }

    /// Modulo with Python semantics, simplified where possible.
    pub fn modulo(&self, other: &Dim) -> Dim {
        if let (Some(a), Some(b)) = (self.as_const(), other.as_const()) {
            if let Some(r) = py_mod(a, b) {
                return Dim::constant(r);
            }
        }
        if self.div_exact(other).is_some() {
            return Dim::constant(0);
        }
        atom_dim(Atom::Mod(Box::new(self.clone()), Box::new(other.clone())))
    }

    /// Substitute symbols and evaluate. Fails on an unbound symbol, division by zero or overflow.
    pub fn eval(&self, bindings: &BTreeMap<String, i64>) -> Result<i64, DimError> {
        let overflow = || DimError::Overflow(self.to_string());
        let mut total: i64 = 0;
        for (mono, coef) in self.terms() {
            let mut term = coef;
            for atom in mono {
                let v = match atom {
                    Atom::Sym(s) => *bindings.get(s).ok_or_else(|| DimError::Unbound(s.clone()))?,
                    Atom::FloorDiv(a, b) | Atom::Mod(a, b) => {
                        let (a, b) = (a.eval(bindings)?, b.eval(bindings)?);
                        if b == 0 {
                            return Err(DimError::DivisionByZero(self.to_string()));
                        }
                        let r = match atom {
                            Atom::FloorDiv(..) => py_floor_div(a, b),
                            _ => py_mod(a, b),
                        };
                        r.ok_or_else(overflow)?
                    }
                };
                term = term.checked_mul(v).ok_or_else(overflow)?;
            }
            total = total.checked_add(term).ok_or_else(overflow)?;
        }
        Ok(total)
    }

    /// Replace symbols by other dims (partial substitution; unknown symbols stay).
    pub fn substitute(&self, map: &BTreeMap<String, Dim>) -> Dim {
        let mut out = Dim::constant(0);
        for (mono, coef) in self.terms() {
            let mut term = Dim::constant(coef);
            for atom in mono {
                let factor = match atom {
                    Atom::Sym(s) => map.get(s).cloned().unwrap_or_else(|| Dim::symbol(s.clone())),
                    Atom::FloorDiv(a, b) => a.substitute(map).floor_div(&b.substitute(map)),
                    Atom::Mod(a, b) => a.substitute(map).modulo(&b.substitute(map)),
                };
                term = term.mul(&factor);
            }
            out = out.add(&term);
        }
        out
    }

    /// Parse the text form (`s0 + 1`, `2*s0`, `(s0 - 1)//2 + 1`, `768`), within the limits
    /// [`MAX_DIM_TEXT`], [`MAX_DIM_DEPTH`] and [`MAX_DIM_NODES`].
    ///
    /// The canonical text of a parsed dim ([`Display`](fmt::Display)) parses back to the same dim:
    /// a dim whose canonical text would outgrow [`MAX_DIM_TEXT`] (products expand) is refused.
    pub fn parse(text: &str) -> Result<Dim, DimError> {
        if text.len() > MAX_DIM_TEXT {
            return Err(DimError::TooLong { len: text.len(), max: MAX_DIM_TEXT });
        }
        let mut p = Parser { src: text, pos: 0, depth: 0 };
        let d = p.expr()?;
        p.skip_ws();
        if p.pos != text.len() {
            return Err(p.error("unexpected trailing text"));
        }
        // Expanded products can print longer than they were written (`(a + b)**8`); such a dim
        // would be written into a file it could not be read back from.
        if !d.dim.prints_within(MAX_DIM_TEXT) {
            return Err(DimError::PrintsTooLong { max: MAX_DIM_TEXT });
        }
        Ok(d.dim)
    }
}

/// Python's `a // b`; `None` on division by zero or overflow.
fn py_floor_div(a: i64, b: i64) -> Option<i64> {
    let q = a.checked_div(b)?;
    Some(if a.checked_rem(b)? != 0 && ((a < 0) != (b < 0)) { q - 1 } else { q })
}

/// Python's `a % b` (the sign of `b`); `None` on division by zero or overflow.
fn py_mod(a: i64, b: i64) -> Option<i64> {
    let r = a.checked_rem(b)?;
    Some(if r != 0 && ((r < 0) != (b < 0)) { r + b } else { r })
}

/// `1 * atom`.
fn atom_dim(atom: Atom) -> Dim {
    let term: Term = (vec![atom].into_boxed_slice(), 1);
    Dim(Repr::Poly(vec![term].into_boxed_slice()))
}

/// The monomial `m1 * m2`, sorted.
fn sorted_product(m1: &[Atom], m2: &[Atom]) -> Monomial {
    let mut m = Vec::with_capacity(m1.len() + m2.len());
    m.extend_from_slice(m1);
    m.extend_from_slice(m2);
    m.sort();
    m.into_boxed_slice()
}

/// `m / d` as multisets of atoms, when every factor of `d` occurs in `m`.
fn remove_factors(m: &[Atom], d: &[Atom]) -> Option<Monomial> {
    let mut rest = m.to_vec();
    for atom in d {
        let idx = rest.iter().position(|a| a == atom)?;
        rest.remove(idx);
    }
    Some(rest.into_boxed_slice())
}

impl From<i64> for Dim {
    fn from(v: i64) -> Dim {
        Dim::constant(v)
    }
}

impl PartialOrd for Dim {
    fn partial_cmp(&self, other: &Dim) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Dim {
    /// Lexicographic over the terms in canonical order (as a sorted map of monomial to
    /// coefficient compares), so ordering does not depend on how a dim is stored.
    fn cmp(&self, other: &Dim) -> std::cmp::Ordering {
        self.terms().cmp(other.terms())
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Atom::Sym(s) => f.write_str(s),
            Atom::FloorDiv(a, b) => write!(f, "({a})//({b})"),
            Atom::Mod(a, b) => write!(f, "({a})%({b})"),
        }
    }
}

impl fmt::Display for Dim {
    /// The canonical text, which [`Dim::parse`] reads back to the same dim: symbolic terms
    /// first (in canonical order), the constant last (`s0 + 1`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(c) = self.as_const() {
            return write_signed(f, c, true);
        }
        let mut first = true;
        for (mono, coef) in self.terms().filter(|(m, _)| !m.is_empty()) {
            // `i64::MIN` has no magnitude in i64: written as two terms, `-9223372036854775807*x -
            // x`, which parse back to it exactly.
            let parts: &[i64] = if coef == i64::MIN { &[-i64::MAX, -1] } else { &[coef] };
            for &coef in parts {
                if first {
                    if coef < 0 {
                        f.write_str("-")?;
                    }
                } else {
                    f.write_str(if coef < 0 { " - " } else { " + " })?;
                }
                let mag = coef.unsigned_abs();
                if mag != 1 {
                    write!(f, "{mag}*")?;
                }
                // `//` and `%` take everything to their left in a product, and a leading `-`
                // binds tighter: an opaque atom after a sign, a coefficient or another factor
                // is parenthesised (`s0*((s1)//(2))`, not `s0*(s1)//(2)`, which is
                // `(s0*s1)//2`).
                let prefixed = (first && coef < 0) || mag != 1;
                for (i, atom) in mono.iter().enumerate() {
                    if i > 0 {
                        f.write_str("*")?;
                    }
                    match atom {
                        Atom::FloorDiv(..) | Atom::Mod(..) if i > 0 || prefixed => write!(f, "({atom})")?,
                        _ => write!(f, "{atom}")?,
                    }
                }
                first = false;
            }
        }
        let constant = self.coef_of(&[]);
        if constant != 0 {
            write_signed(f, constant, false)?;
        }
        Ok(())
    }
}

/// A constant, alone (`-4`) or after terms (` - 4`); `i64::MIN`, which has no magnitude in i64,
/// as `-9223372036854775807 - 1`.
fn write_signed(f: &mut fmt::Formatter<'_>, c: i64, alone: bool) -> fmt::Result {
    let parts: &[i64] = if c == i64::MIN { &[-i64::MAX, -1] } else { &[c] };
    for (i, &c) in parts.iter().enumerate() {
        match (alone && i == 0, c < 0) {
            (true, _) => write!(f, "{c}")?,
            (false, true) => write!(f, " - {}", c.unsigned_abs())?,
            (false, false) => write!(f, " + {c}")?,
        }
    }
    Ok(())
}

impl fmt::Debug for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl Serialize for Dim {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.as_const() {
            Some(v) => s.serialize_i64(v),
            None => s.serialize_str(&self.to_string()),
        }
    }
}

/// An integer, or a dim's text (through [`Dim::parse`], so with its limits). A visitor rather
/// than an untagged enum: nothing is buffered, and any other shape is refused at once.
impl<'de> Deserialize<'de> for Dim {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dim, D::Error> {
        struct DimVisitor;
        impl Visitor<'_> for DimVisitor {
            type Value = Dim;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a dim expression such as \"s0 + 1\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dim, E> {
                Ok(Dim::constant(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dim, E> {
                i64::try_from(v).map(Dim::constant).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dim, E> {
                Dim::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(DimVisitor)
    }
}

/// A parsed sub-expression with its size and nesting, carried along so each limit is checked
/// before the work it bounds without walking the dim again.
struct Parsed {
    dim: Dim,
    /// The dim's nodes (see [`MAX_DIM_NODES`]).
    nodes: usize,
    /// At least how deep floor divisions and modulos nest in the dim (exact unless terms
    /// cancelled).
    depth: usize,
}

impl Parsed {
    fn leaf(dim: Dim) -> Parsed {
        let nodes = dim.nodes();
        Parsed { dim, nodes, depth: 0 }
    }
}

/// Nodes of `a * b` before like terms merge, an upper bound on the product's: every pair of
/// terms, each with the atoms of both, i.e. `|b|·nodes(a) + |a|·nodes(b) − |a|·|b|` (a term of
/// `n` nodes has `n − 1` atoms).
fn product_nodes(a: &Parsed, b: &Parsed) -> usize {
    let (ta, tb) = (a.dim.term_count(), b.dim.term_count());
    tb.saturating_mul(a.nodes).saturating_add(ta.saturating_mul(b.nodes)).saturating_sub(ta.saturating_mul(tb))
}

/// Recursive-descent parser for dim expressions, precedence: `+ -` < `* // % **` < unary `-` <
/// atoms. Only parentheses recurse (at most [`MAX_DIM_DEPTH`] deep); chains of operators and of
/// unary minus signs are loops.
struct Parser<'a> {
    src: &'a str,
    pos: usize,
    /// Parentheses open around `pos`.
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, reason: &str) -> DimError {
        DimError::Parse { text: self.src.to_string(), reason: format!("{reason} at byte {}", self.pos) }
    }

    /// Refuse a result of `nodes` nodes with atoms `depth` deep, before it is built.
    fn check(&self, nodes: usize, depth: usize) -> Result<(), DimError> {
        if depth > MAX_DIM_ATOM_DEPTH {
            return Err(DimError::TooDeep { at: self.pos, max: MAX_DIM_ATOM_DEPTH });
        }
        if nodes > MAX_DIM_NODES {
            return Err(DimError::TooLarge { at: self.pos, max: MAX_DIM_NODES });
        }
        Ok(())
    }

    fn skip_ws(&mut self) {
        // Whitespace may be more than one byte (U+00A0): step over whole characters.
        while let Some(c) = self.src[self.pos..].chars().next().filter(|c| c.is_whitespace()) {
            self.pos += c.len_utf8();
        }
    }

    fn eat(&mut self, tok: &str) -> bool {
        self.skip_ws();
        if self.src[self.pos..].starts_with(tok) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }

    /// Terms joined by `+` and `-`, collected into one sum (adding each term to a finished
    /// dim would copy the whole sum for every term: quadratic in the number of terms).
    fn expr(&mut self) -> Result<Parsed, DimError> {
        let first = self.term()?;
        let mut depth = first.depth;
        let mut sum: Option<TermSum> = None;
        loop {
            let sign = if self.eat("+") {
                1
            } else if self.eat("-") {
                -1
            } else {
                return Ok(match sum {
                    None => first,
                    Some(sum) => {
                        let nodes = sum.nodes;
                        Parsed { dim: sum.finish(), nodes, depth }
                    }
                });
            };
            let t = self.term()?;
            let sum = sum.get_or_insert_with(|| {
                let mut s = TermSum::default();
                s.add_scaled(&first.dim, 1);
                s
            });
            sum.add_scaled(&t.dim, sign);
            depth = depth.max(t.depth);
            self.check(sum.nodes, depth)?;
        }
    }

    /// Factors joined by `*`, `//`, `%` and `**`, left to right.
    fn term(&mut self) -> Result<Parsed, DimError> {
        let mut acc = self.unary()?;
        loop {
            if self.eat("//") {
                let rhs = self.unary()?;
                acc = self.div_like(acc, &rhs, Dim::floor_div)?;
            } else if self.eat("**") {
                let exp = self.unary()?.dim.as_const().ok_or_else(|| self.error("non-constant exponent"))?;
                if !(0..=16).contains(&exp) {
                    return Err(self.error("exponent out of range"));
                }
                let base = acc;
                acc = Parsed::leaf(Dim::constant(1));
                for _ in 0..exp {
                    acc = self.product(acc, &base)?;
                }
            } else if self.eat("*") {
                let rhs = self.unary()?;
                acc = self.product(acc, &rhs)?;
            } else if self.eat("%") {
                let rhs = self.unary()?;
                acc = self.div_like(acc, &rhs, Dim::modulo)?;
            } else {
                return Ok(acc);
            }
        }
    }

    /// `a * b`, its size checked first. When both are single symbolic terms (the chain
    /// `2*s0*s1*…`), `a`'s atoms are kept and `b`'s inserted in order, instead of copying `a`'s
    /// for every factor.
    fn product(&self, a: Parsed, b: &Parsed) -> Result<Parsed, DimError> {
        let depth = a.depth.max(b.depth);
        self.check(product_nodes(&a, b), depth)?;
        let mut sum = TermSum::default();
        match (a.dim.0, &b.dim.0) {
            (Repr::Poly(terms), Repr::Poly(other)) if terms.len() == 1 && other.len() == 1 => {
                let (mono, coef) = terms.into_vec().pop().expect("one term");
                let (m2, c2) = &other[0];
                let mut atoms = mono.into_vec();
                for atom in m2.iter() {
                    // After equal atoms, as a stable sort of `a ++ b` would place it.
                    let at = atoms.partition_point(|x| x <= atom);
                    atoms.insert(at, atom.clone());
                }
                sum.add(atoms.into_boxed_slice(), coef.saturating_mul(*c2));
            }
            (repr, _) => sum.add_product(&Dim(repr), &b.dim),
        }
        let nodes = sum.nodes;
        Ok(Parsed { dim: sum.finish(), nodes, depth })
    }

    /// `a // b` or `a % b`: at most both sides plus a new atom and its term, one level deeper.
    fn div_like(&self, a: Parsed, b: &Parsed, op: fn(&Dim, &Dim) -> Dim) -> Result<Parsed, DimError> {
        self.check(a.nodes.saturating_add(b.nodes).saturating_add(2), a.depth.max(b.depth) + 1)?;
        let dim = op(&a.dim, &b.dim);
        // Within the limits checked above, so the walk is bounded; the result may have simplified.
        let (nodes, depth) = dim.measure(0).ok_or(DimError::TooDeep { at: self.pos, max: MAX_DIM_ATOM_DEPTH })?;
        Ok(Parsed { dim, nodes, depth })
    }

    /// Any number of unary minus signs, then a primary.
    fn unary(&mut self) -> Result<Parsed, DimError> {
        let mut minus = 0usize;
        while self.eat("-") {
            minus += 1;
        }
        let mut p = self.primary()?;
        // Negation saturates (i64::MIN becomes i64::MAX, which becomes i64::MIN + 1), so from
        // the second one on it repeats with period 2: three at most give what all of them would.
        let times = if minus <= 2 { minus } else { 2 + minus % 2 };
        for _ in 0..times {
            p.dim = p.dim.scale(-1);
        }
        Ok(p)
    }

    fn primary(&mut self) -> Result<Parsed, DimError> {
        self.skip_ws();
        if self.eat("(") {
            self.depth += 1;
            if self.depth > MAX_DIM_DEPTH {
                return Err(DimError::TooDeep { at: self.pos - 1, max: MAX_DIM_DEPTH });
            }
            let d = self.expr()?;
            if !self.eat(")") {
                return Err(self.error("expected `)`"));
            }
            self.depth -= 1;
            return Ok(d);
        }
        let rest = &self.src[self.pos..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            let v: i64 = rest[..digits].parse().map_err(|_| self.error("integer too large"))?;
            self.pos += digits;
            return Ok(Parsed::leaf(Dim::constant(v)));
        }
        let ident = rest
            .char_indices()
            .take_while(|(i, c)| c.is_ascii_alphabetic() || *c == '_' || (*i > 0 && c.is_ascii_digit()))
            .count();
        if ident > 0 {
            let name = &rest[..ident];
            self.pos += ident;
            if self.src[self.pos..].trim_start().starts_with('(') {
                return Err(self.error(&format!("function `{name}` is not supported")));
            }
            return Ok(Parsed::leaf(Dim::symbol(name)));
        }
        Err(self.error("expected a number, a symbol or `(`"))
    }
}

/// The known range of a symbol: `min <= s <= max` (no `max` means unbounded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymRange {
    pub min: i64,
    pub max: Option<i64>,
}

impl SymRange {
    /// True when `v` lies inside the range.
    pub fn contains(&self, v: i64) -> bool {
        v >= self.min && self.max.is_none_or(|m| v <= m)
    }
}

impl fmt::Display for SymRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.max {
            Some(m) => write!(f, "[{}, {m}]", self.min),
            None => write!(f, "[{}, inf]", self.min),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Dim {
        Dim::parse(s).unwrap()
    }

    #[test]
    fn canonical_forms_compare_equal() {
        assert_eq!(d("s0 + 1"), d("1 + s0"));
        assert_eq!(d("2*s0"), d("s0 + s0"));
        assert_eq!(d("s0*s1"), d("s1 * s0"));
        assert_eq!(d("s0 - s0"), Dim::constant(0));
        assert_eq!(d("(s0 + 1) - 1"), d("s0"));
    }

    #[test]
    fn display_round_trips() {
        for text in ["s0 + 1", "2*s0", "s0*s1 - 3", "768", "-4", "(s0 - 1)//(2) + 1", "-s0 + 5"] {
            let dim = d(text);
            assert_eq!(d(&dim.to_string()), dim, "{text} -> {dim}");
        }
    }

    #[test]
    fn exact_division_simplifies() {
        assert_eq!(d("768*s0").div_exact(&d("12*s0")), Some(Dim::constant(64)));
        assert_eq!(d("4*s0 + 8").floor_div(&Dim::constant(4)), d("s0 + 2"));
        // The divisible terms leave the floor: a conv's `(s - 10) // 5 + 1` is `s // 5 - 1`.
        assert_eq!(d("s0 - 10").floor_div(&Dim::constant(5)).add(&Dim::constant(1)), d("(s0)//(5) - 1"));
        assert_eq!(d("5*s0 + 3").floor_div(&Dim::constant(5)), d("s0"));
        assert_eq!(d("(s0)//(5)").floor_div(&Dim::constant(2)), d("(s0)//(10)"));
        assert_eq!(d("5*s0 + s1 + 7").floor_div(&Dim::constant(5)), d("s0 + (s1 + 7)//(5)"));
        assert_eq!(d("s0 + 1").div_exact(&d("s0")), None);
        assert_eq!(d("3*s0 + 3").div_exact(&d("s0 + 1")), Some(Dim::constant(3)));
    }

    #[test]
    fn floor_div_and_mod_follow_python() {
        assert_eq!(Dim::constant(-7).floor_div(&Dim::constant(2)), Dim::constant(-4));
        assert_eq!(Dim::constant(-7).modulo(&Dim::constant(2)), Dim::constant(1));
        let opaque = d("(s0 - 1)//2 + 1");
        let b: BTreeMap<String, i64> = [("s0".to_string(), 10)].into();
        assert_eq!(opaque.eval(&b), Ok(5));
        assert_eq!(d("s0 % 3").eval(&b), Ok(1));
    }

    #[test]
    fn eval_reports_unbound_and_overflow() {
        let b = BTreeMap::new();
        assert_eq!(d("s7 + 1").eval(&b), Err(DimError::Unbound("s7".into())));
        let big: BTreeMap<String, i64> = [("s0".to_string(), i64::MAX)].into();
        assert!(matches!(d("2*s0").eval(&big), Err(DimError::Overflow(_))));
    }

    #[test]
    fn extreme_values_do_not_panic() {
        let min = Dim::constant(i64::MIN);
        let _ = min.floor_div(&Dim::constant(-1));
        let _ = min.modulo(&Dim::constant(-1));
        let _ = min.div_exact(&Dim::constant(-1));
        let _ = min.mul(&min).add(&min).scale(-1);
        let _ = d("9223372036854775807 * s0").mul(&d("s0 * 4"));
        assert_eq!(Dim::constant(7).floor_div(&Dim::constant(0)).as_const(), None);
    }

    #[test]
    fn parse_rejects_garbage() {
        for bad in ["", "s0 +", "(s0", "Max(1, s0)", "s0 $ 2", "99999999999999999999"] {
            assert!(Dim::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deep_parentheses_are_refused_where_they_cross_the_limit() {
        let nest = |n: usize| format!("{}s0{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(Dim::parse(&nest(MAX_DIM_DEPTH)), Ok(d("s0")));
        // 2,000 levels fit the length limit: the depth limit refuses them, at the 65th `(`.
        for n in [MAX_DIM_DEPTH + 1, 2000] {
            assert_eq!(Dim::parse(&nest(n)), Err(DimError::TooDeep { at: MAX_DIM_DEPTH, max: MAX_DIM_DEPTH }));
        }
        // 100,000 levels are refused before any parsing.
        let huge = nest(100_000);
        assert_eq!(Dim::parse(&huge), Err(DimError::TooLong { len: huge.len(), max: MAX_DIM_TEXT }));
    }

    #[test]
    fn length_limit_is_checked_first() {
        let at_limit = format!("{}1", " ".repeat(MAX_DIM_TEXT - 1));
        assert_eq!(Dim::parse(&at_limit), Ok(Dim::constant(1)));
        let over = format!(" {at_limit}");
        assert_eq!(Dim::parse(&over), Err(DimError::TooLong { len: MAX_DIM_TEXT + 1, max: MAX_DIM_TEXT }));
    }

    /// Unary minus is a loop, not a recursion, and gives what applying each sign would,
    /// saturation at `i64::MIN` included.
    #[test]
    fn leading_minus_signs_do_not_recurse() {
        assert_eq!(Dim::parse(&format!("{}s0", "-".repeat(4000))), Ok(d("s0")));
        assert_eq!(Dim::parse(&format!("{}s0", "-".repeat(4001))), Ok(d("-s0")));
        let min = "(-9223372036854775807 - 1)";
        for n in 0..8 {
            let mut want = Dim::constant(i64::MIN);
            for _ in 0..n {
                want = want.scale(-1);
            }
            assert_eq!(Dim::parse(&format!("{}{min}", "-".repeat(n))), Ok(want), "{n} signs");
        }
    }

    /// `s0//s1//s1…` nests one floor division per `//` with no parenthesis: refused past the
    /// atom depth limit, and a 100 KB chain before any work.
    #[test]
    fn floor_division_chains_are_bounded() {
        let chain = |n: usize| format!("s0{}", "//s1".repeat(n));
        let ok = Dim::parse(&chain(MAX_DIM_ATOM_DEPTH)).unwrap();
        assert_eq!(d(&ok.to_string()), ok, "the canonical text of the deepest chain parses back");
        assert!(ok.fits_limits());
        for (n, at) in
            [(MAX_DIM_ATOM_DEPTH + 1, 2 + 4 * (MAX_DIM_ATOM_DEPTH + 1)), (1000, 2 + 4 * (MAX_DIM_ATOM_DEPTH + 1))]
        {
            assert_eq!(Dim::parse(&chain(n)), Err(DimError::TooDeep { at, max: MAX_DIM_ATOM_DEPTH }), "{n}");
        }
        let long = chain(25_000);
        assert!(long.len() >= 100_000);
        assert_eq!(Dim::parse(&long), Err(DimError::TooLong { len: long.len(), max: MAX_DIM_TEXT }));
        assert_eq!(
            Dim::parse(&format!("s0{}", "%s1".repeat(40))).map_err(|e| matches!(e, DimError::TooDeep { .. })),
            Err(true)
        );
    }

    /// A few bytes of products of sums or powers would expand into millions of terms: refused
    /// before the product is computed.
    #[test]
    fn expanding_products_are_refused_before_they_are_built() {
        // 1,024 terms of 11 nodes; 24 factors would be 16 million terms.
        let factors: Vec<String> = (0..10).map(|i| format!("(a{i} + b{i})")).collect();
        assert!(matches!(Dim::parse(&factors.join("*")), Err(DimError::TooLarge { max: MAX_DIM_NODES, .. })));
        // 1,716 terms of 7 nodes.
        assert!(matches!(Dim::parse("(a+b+c+d+e+f+g+h)**6"), Err(DimError::TooLarge { .. })));
        assert!(matches!(Dim::parse("((a+b)**16)**16"), Err(DimError::TooLarge { .. })));
        // Sums are checked as they grow: 60 terms of 100 nodes each.
        let sum = vec!["(a+b+c+d)**3"; 60].iter().enumerate().map(|(i, p)| format!("{p}*x{i}")).collect::<Vec<_>>();
        assert!(matches!(Dim::parse(&sum.join(" + ")), Err(DimError::TooLarge { .. })));
        // A few nodes, but expanded they print longer than the text limit.
        let long = format!("({} + b)**8", "a".repeat(200));
        assert_eq!(Dim::parse(&long), Err(DimError::PrintsTooLong { max: MAX_DIM_TEXT }));
        // What does fit still parses: (a+b)**4 has 5 terms.
        assert_eq!(d("(a+b)**4"), d("a*a*a*a + 4*a*a*a*b + 6*a*a*b*b + 4*a*b*b*b + b*b*b*b"));
    }

    /// Long sums and products within the length limit parse to what they say.
    #[test]
    fn long_chains_parse() {
        let names: Vec<String> = (0..600).map(|i| format!("s{i}")).collect();
        let sum = d(&names.join(" + "));
        assert_eq!(sum.symbols().len(), 600);
        assert_eq!(d(&sum.to_string()), sum);
        let minus = d(&format!("s0{}", " - s0 + s0".repeat(300)));
        assert_eq!(minus, d("s0"));
        let product = d(&vec!["a"; 2000].join("*"));
        assert_eq!(product, d(&vec!["a"; 1000].join("*")).mul(&d(&vec!["a"; 1000].join("*"))));
        assert_eq!(d(&product.to_string()), product);
    }

    /// Whitespace of more than one byte used to step into the middle of a character and panic.
    #[test]
    fn multibyte_whitespace_is_whitespace() {
        assert_eq!(Dim::parse("s0\u{a0}+\u{3000}1"), Ok(d("s0 + 1")));
        assert!(Dim::parse("s0 \u{e9}").is_err());
    }

    /// An opaque floor division or modulo after a coefficient, a sign or another factor is
    /// printed in parentheses: `s0*(s1)//(2)` would read back as `(s0*s1)//2`.
    #[test]
    fn opaque_atoms_in_products_round_trip() {
        for text in [
            "s0*(s1//2)",
            "2*(s1//3)",
            "-(s1//2)",
            "-(s1 % 3) + s0",
            "s0 - 3*(s1//2)*(s2 % 5)",
            "(s0*(s1//2))//3",
            "-9223372036854775807*s0 - s0 + 1",
            "(-9223372036854775807 - 1)*s0*(s1//2) - 9223372036854775807 - 1",
            "-9223372036854775807 - 1",
        ] {
            let dim = d(text);
            assert_eq!(d(&dim.to_string()), dim, "{text} -> {dim}");
        }
        assert_eq!(d("s0*(s1//2)").to_string(), "s0*((s1)//(2))");
        assert_eq!(d("(s0 - 1)//2 + 1").to_string(), "(s0 - 1)//(2) + 1", "unchanged where it was unambiguous");
    }

    /// Ordering is that of the terms as a sorted map (the constant term first), whatever the
    /// representation: zero (no terms) sorts first.
    #[test]
    fn ordering_follows_the_terms() {
        let sorted = [d("0"), d("-1"), d("1"), d("s0 + 1"), d("2"), d("s0"), d("2*s0"), d("s0*s1"), d("s1")];
        for w in sorted.windows(2) {
            assert!(w[0] < w[1], "{} < {}", w[0], w[1]);
        }
    }

    /// A constant is inline: no heap, and the whole dim is two words.
    #[test]
    fn constants_are_inline() {
        assert_eq!(std::mem::size_of::<Dim>(), 16);
        assert!(matches!(Dim::constant(768).0, Repr::Const(768)));
        assert!(matches!(d("2*(s0 + 4) - 2*s0").0, Repr::Const(8)), "symbolic terms that cancel leave a constant");
        assert!(matches!(Dim::default().0, Repr::Const(0)));
        // `fits_limits` takes every constant as fitting: the longest prints in 24 bytes.
        assert_eq!(Dim::constant(i64::MIN).to_string(), "-9223372036854775807 - 1");
        assert!(Dim::constant(i64::MIN).fits_limits());
    }

    #[test]
    fn serde_refuses_hostile_dims_with_the_parse_error() {
        let deep = format!("\"{}s0{}\"", "(".repeat(100), ")".repeat(100));
        let err = serde_json::from_str::<Dim>(&deep).unwrap_err().to_string();
        assert!(err.contains("nests deeper than 64 levels at byte 64"), "{err}");
        let err = serde_json::from_str::<Dim>("[1]").unwrap_err().to_string();
        assert!(err.contains("an integer or a dim expression"), "{err}");
        assert!(serde_json::from_str::<Dim>("18446744073709551615").is_err(), "u64 beyond i64");
    }

    #[test]
    fn serde_uses_int_or_string() {
        let dims = vec![Dim::constant(3), d("s0 + 1")];
        let json = serde_json::to_string(&dims).unwrap();
        assert_eq!(json, r#"[3,"s0 + 1"]"#);
        let back: Vec<Dim> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, dims);
    }
}
