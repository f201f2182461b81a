//! Tensor dimensions: static integers or symbolic expressions over named symbols (`s0`, `s0 + 1`).
//!
//! A [`Dim`] is a polynomial with integer coefficients over *atoms*: a symbol, or an opaque
//! floor division / modulo that cannot be simplified further. The polynomial form is canonical,
//! so two dims compare equal exactly when their expressions are the same after normalisation
//! (`s0 + 1 == 1 + s0`, `2*s0 == s0 + s0`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
type Monomial = Vec<Atom>;

/// A dimension: an integer polynomial over symbols. Constants are the polynomial with only the
/// empty monomial.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dim {
    terms: BTreeMap<Monomial, i64>,
}

/// Errors from parsing or evaluating a symbolic dim.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DimError {
    /// The text is not a dim expression this parser understands.
    #[error("cannot parse dim expression `{text}`: {reason}")]
    Parse { text: String, reason: String },
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

impl Dim {
    /// A static dimension.
    pub fn constant(value: i64) -> Dim {
        let mut terms = BTreeMap::new();
        if value != 0 {
            terms.insert(Vec::new(), value);
        }
        Dim { terms }
    }

    /// A bare symbol such as `s0`.
    pub fn symbol(name: impl Into<String>) -> Dim {
        let mut terms = BTreeMap::new();
        terms.insert(vec![Atom::Sym(name.into())], 1);
        Dim { terms }
    }

    /// The value when the dim is static.
    pub fn as_const(&self) -> Option<i64> {
        match self.terms.len() {
            0 => Some(0),
            1 => self.terms.get(&Vec::new()).copied(),
            _ => None,
        }
    }

    /// True when the dim has no symbols.
    pub fn is_const(&self) -> bool {
        self.as_const().is_some()
    }

    /// Every symbol name used anywhere in the expression.
    pub fn symbols(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.collect_symbols(&mut out);
        out
    }

    fn collect_symbols(&self, out: &mut BTreeSet<String>) {
        for mono in self.terms.keys() {
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

    fn from_terms(terms: BTreeMap<Monomial, i64>) -> Dim {
        Dim { terms: terms.into_iter().filter(|(_, c)| *c != 0).collect() }
    }

    /// Sum of two dims.
    pub fn add(&self, other: &Dim) -> Dim {
        let mut terms = self.terms.clone();
        for (m, c) in &other.terms {
            let t = terms.entry(m.clone()).or_insert(0);
            *t = t.saturating_add(*c);
        }
        Dim::from_terms(terms)
    }

    /// Difference of two dims.
    pub fn sub(&self, other: &Dim) -> Dim {
        self.add(&other.scale(-1))
    }

    /// Multiply by an integer.
    pub fn scale(&self, k: i64) -> Dim {
        Dim::from_terms(self.terms.iter().map(|(m, c)| (m.clone(), c.saturating_mul(k))).collect())
    }

    /// Product of two dims.
    pub fn mul(&self, other: &Dim) -> Dim {
        let mut terms: BTreeMap<Monomial, i64> = BTreeMap::new();
        for (m1, c1) in &self.terms {
            for (m2, c2) in &other.terms {
                let mut m = m1.clone();
                m.extend(m2.iter().cloned());
                m.sort();
                let t = terms.entry(m).or_insert(0);
                *t = t.saturating_add(c1.saturating_mul(*c2));
            }
        }
        Dim::from_terms(terms)
    }

    /// Exact division when `other` divides `self` term by term; `None` otherwise.
    pub fn div_exact(&self, other: &Dim) -> Option<Dim> {
        if other.terms.is_empty() {
            return None;
        }
        if self.terms.is_empty() {
            return Some(Dim::constant(0));
        }
        if other.terms.len() == 1 {
            let (dm, dc) = other.terms.iter().next()?;
            let mut terms = BTreeMap::new();
            for (m, c) in &self.terms {
                if c.checked_rem(*dc)? != 0 {
                    return None;
                }
                let rest = remove_factors(m, dm)?;
                let t: &mut i64 = terms.entry(rest).or_insert(0);
                *t = t.saturating_add(c.checked_div(*dc)?);
            }
            return Some(Dim::from_terms(terms));
        }
        // A polynomial divisor: accept only an integer multiple of it.
        let (m0, c0) = other.terms.iter().next()?;
        let k_num = *self.terms.get(m0)?;
        if k_num.checked_rem(*c0)? != 0 {
            return None;
        }
        let k = k_num.checked_div(*c0)?;
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
        for (mono, coef) in &self.terms {
            let mut term = *coef;
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
        for (mono, coef) in &self.terms {
            let mut term = Dim::constant(*coef);
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

    /// Parse the text form (`s0 + 1`, `2*s0`, `(s0 - 1)//2 + 1`, `768`).
    pub fn parse(text: &str) -> Result<Dim, DimError> {
        let mut p = Parser { src: text, pos: 0 };
        let d = p.expr()?;
        p.skip_ws();
        if p.pos != text.len() {
            return Err(p.error("unexpected trailing text"));
        }
        Ok(d)
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

fn atom_dim(atom: Atom) -> Dim {
    let mut terms = BTreeMap::new();
    terms.insert(vec![atom], 1);
    Dim { terms }
}

/// `m / d` as multisets of atoms, when every factor of `d` occurs in `m`.
fn remove_factors(m: &Monomial, d: &Monomial) -> Option<Monomial> {
    let mut rest = m.clone();
    for atom in d {
        let idx = rest.iter().position(|a| a == atom)?;
        rest.remove(idx);
    }
    Some(rest)
}

impl From<i64> for Dim {
    fn from(v: i64) -> Dim {
        Dim::constant(v)
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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.terms.is_empty() {
            return f.write_str("0");
        }
        // Symbolic terms first (in canonical order), the constant last: `s0 + 1`.
        let mut first = true;
        let constant = self.terms.get(&Vec::new()).copied();
        for (mono, coef) in self.terms.iter().filter(|(m, _)| !m.is_empty()) {
            let mag = coef.abs();
            if first {
                if *coef < 0 {
                    f.write_str("-")?;
                }
            } else {
                f.write_str(if *coef < 0 { " - " } else { " + " })?;
            }
            first = false;
            if mag != 1 {
                write!(f, "{mag}*")?;
            }
            for (i, atom) in mono.iter().enumerate() {
                if i > 0 {
                    f.write_str("*")?;
                }
                write!(f, "{atom}")?;
            }
        }
        if let Some(c) = constant {
            if first {
                write!(f, "{c}")?;
            } else if c < 0 {
                write!(f, " - {}", c.unsigned_abs())?;
            } else {
                write!(f, " + {c}")?;
            }
        }
        Ok(())
    }
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

impl<'de> Deserialize<'de> for Dim {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dim, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Int(i64),
            Text(String),
        }
        match Repr::deserialize(d)? {
            Repr::Int(v) => Ok(Dim::constant(v)),
            Repr::Text(t) => Dim::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// Recursive-descent parser for dim expressions, precedence: `+ -` < `* // %` < unary `-` < atoms.
struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, reason: &str) -> DimError {
        DimError::Parse { text: self.src.to_string(), reason: format!("{reason} at byte {}", self.pos) }
    }

    fn skip_ws(&mut self) {
        while self.src[self.pos..].starts_with(char::is_whitespace) {
            self.pos += 1;
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

    fn expr(&mut self) -> Result<Dim, DimError> {
        let mut acc = self.term()?;
        loop {
            if self.eat("+") {
                acc = acc.add(&self.term()?);
            } else if self.eat("-") {
                acc = acc.sub(&self.term()?);
            } else {
                return Ok(acc);
            }
        }
    }

    fn term(&mut self) -> Result<Dim, DimError> {
        let mut acc = self.unary()?;
        loop {
            if self.eat("//") {
                acc = acc.floor_div(&self.unary()?);
            } else if self.eat("**") {
                let exp = self.unary()?.as_const().ok_or_else(|| self.error("non-constant exponent"))?;
                if !(0..=16).contains(&exp) {
                    return Err(self.error("exponent out of range"));
                }
                let base = acc.clone();
                acc = Dim::constant(1);
                for _ in 0..exp {
                    acc = acc.mul(&base);
                }
            } else if self.eat("*") {
                acc = acc.mul(&self.unary()?);
            } else if self.eat("%") {
                acc = acc.modulo(&self.unary()?);
            } else {
                return Ok(acc);
            }
        }
    }

    fn unary(&mut self) -> Result<Dim, DimError> {
        if self.eat("-") {
            return Ok(self.unary()?.scale(-1));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Dim, DimError> {
        self.skip_ws();
        if self.eat("(") {
            let d = self.expr()?;
            if !self.eat(")") {
                return Err(self.error("expected `)`"));
            }
            return Ok(d);
        }
        let rest = &self.src[self.pos..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            let v: i64 = rest[..digits].parse().map_err(|_| self.error("integer too large"))?;
            self.pos += digits;
            return Ok(Dim::constant(v));
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
            return Ok(Dim::symbol(name));
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
    fn serde_uses_int_or_string() {
        let dims = vec![Dim::constant(3), d("s0 + 1")];
        let json = serde_json::to_string(&dims).unwrap();
        assert_eq!(json, r#"[3,"s0 + 1"]"#);
        let back: Vec<Dim> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, dims);
    }
}
