//! Symbolic integers as `torch.export` writes them: `sympy.srepr` text such as
//! `Add(Symbol('s27', positive=True, integer=True), Integer(1))`, converted to [`Dim`].
//!
//! The expression is parsed to a small tree first and checked before any [`Dim`] arithmetic
//! runs: a bound on the sum of absolute coefficients keeps the polynomial arithmetic from
//! overflowing, and bounds on nesting and term counts keep hostile input cheap.

use std::collections::BTreeMap;

use genie_ir::{Dim, SymRange};

/// Symbol ranges (the graph's `range_constraints`), which decide `Max`/`Min`.
pub type Ranges = BTreeMap<String, SymRange>;

/// Deepest nesting accepted.
const MAX_DEPTH: usize = 64;
/// Largest number of tree nodes accepted.
const MAX_NODES: usize = 4096;
/// Largest sum of absolute coefficients of any intermediate polynomial.
const MAX_L1: u128 = 1 << 60;
/// Largest number of monomials of any intermediate polynomial.
const MAX_TERMS: u128 = 4096;

/// One parsed srepr term.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Int(i64),
    Str(String),
    Call { func: String, args: Vec<Expr> },
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
    nodes: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.src.len() && self.src[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.src.get(self.pos).copied()
    }

    fn ident(&mut self) -> Option<String> {
        self.skip_ws();
        let start = self.pos;
        while self.pos < self.src.len() && (self.src[self.pos].is_ascii_alphanumeric() || self.src[self.pos] == b'_') {
            self.pos += 1;
        }
        (self.pos > start && !self.src[start].is_ascii_digit())
            .then(|| String::from_utf8_lossy(&self.src[start..self.pos]).into_owned())
            .or_else(|| {
                self.pos = start;
                None
            })
    }

    fn expr(&mut self, depth: usize) -> Result<Expr, String> {
        if depth > MAX_DEPTH {
            return Err("expression nests too deeply".into());
        }
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err("expression is too large".into());
        }
        match self.peek() {
            Some(b'\'') | Some(b'"') => {
                let quote = self.src[self.pos];
                self.pos += 1;
                let start = self.pos;
                while self.pos < self.src.len() && self.src[self.pos] != quote {
                    self.pos += 1;
                }
                if self.pos >= self.src.len() {
                    return Err("unterminated string".into());
                }
                let s = String::from_utf8_lossy(&self.src[start..self.pos]).into_owned();
                self.pos += 1;
                Ok(Expr::Str(s))
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = self.pos;
                self.pos += 1;
                while self.pos < self.src.len() && self.src[self.pos].is_ascii_digit() {
                    self.pos += 1;
                }
                let text = std::str::from_utf8(&self.src[start..self.pos]).map_err(|e| e.to_string())?;
                text.parse::<i64>().map(Expr::Int).map_err(|_| format!("bad integer `{text}`"))
            }
            _ => {
                let func = self.ident().ok_or_else(|| format!("expected a term at byte {}", self.pos))?;
                if self.peek() != Some(b'(') {
                    // A bare name (`True`, `oo`) is a zero-argument call.
                    return Ok(Expr::Call { func, args: Vec::new() });
                }
                self.pos += 1;
                let mut args = Vec::new();
                loop {
                    if self.peek() == Some(b')') {
                        self.pos += 1;
                        break;
                    }
                    // Keyword arguments (`positive=True`) carry assumptions only: skip them.
                    let save = self.pos;
                    let keyword = self.ident().is_some() && self.peek() == Some(b'=');
                    if keyword {
                        self.pos += 1;
                        self.expr(depth + 1)?;
                    } else {
                        self.pos = save;
                        args.push(self.expr(depth + 1)?);
                    }
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b')') => {}
                        _ => return Err(format!("expected `,` or `)` at byte {}", self.pos)),
                    }
                }
                Ok(Expr::Call { func, args })
            }
        }
    }
}

/// Bounds of a polynomial: sum of absolute coefficients and number of monomials.
#[derive(Clone, Copy)]
struct Bound {
    l1: u128,
    terms: u128,
}

impl Bound {
    fn check(self) -> Result<Bound, String> {
        if self.l1 > MAX_L1 || self.terms > MAX_TERMS {
            Err("expression coefficients or size out of range".into())
        } else {
            Ok(self)
        }
    }
}

fn bound(e: &Expr) -> Result<Bound, String> {
    let atom = Bound { l1: 1, terms: 1 };
    match e {
        Expr::Int(v) => Bound { l1: v.unsigned_abs() as u128, terms: 1 }.check(),
        Expr::Str(_) => Err("unexpected string".into()),
        Expr::Call { func, args } => match func.as_str() {
            "Integer" => args.first().map(bound).unwrap_or(Err("Integer() without a value".into())),
            "Symbol" => Ok(atom),
            "Zero" | "One" | "NegativeOne" => Ok(atom),
            "Add" => {
                let mut b = Bound { l1: 0, terms: 0 };
                for a in args {
                    let x = bound(a)?;
                    b = Bound { l1: b.l1 + x.l1, terms: b.terms + x.terms }.check()?;
                }
                Ok(b)
            }
            "Mul" => {
                let mut b = Bound { l1: 1, terms: 1 };
                for a in args {
                    let x = bound(a)?;
                    b = Bound { l1: b.l1.saturating_mul(x.l1), terms: b.terms.saturating_mul(x.terms) }.check()?;
                }
                Ok(b)
            }
            "Pow" => {
                let [base, Expr::Call { func: f, args: e }] = args.as_slice() else {
                    return Err("Pow needs an Integer exponent".into());
                };
                let n = match (f.as_str(), e.as_slice()) {
                    ("Integer", [Expr::Int(n)]) if (0..=16).contains(n) => *n,
                    _ => return Err("Pow needs an Integer exponent in 0..=16".into()),
                };
                let x = bound(base)?;
                let mut b = Bound { l1: 1, terms: 1 };
                for _ in 0..n {
                    b = Bound { l1: b.l1.saturating_mul(x.l1), terms: b.terms.saturating_mul(x.terms) }.check()?;
                }
                Ok(b)
            }
            "FloorDiv" | "CleanDiv" | "Mod" | "PythonMod" | "Max" | "Min" => {
                // An opaque atom, or a simplified result no larger than its operands.
                let mut b = atom;
                for a in args {
                    let x = bound(a)?;
                    b = Bound { l1: b.l1.max(x.l1), terms: b.terms.max(x.terms) };
                }
                Ok(b)
            }
            _ => Ok(atom),
        },
    }
}

fn to_dim(e: &Expr, ranges: &Ranges) -> Result<Dim, String> {
    let arg = |args: &[Expr], i: usize| -> Result<Dim, String> {
        args.get(i).ok_or_else(|| "missing argument".to_string()).and_then(|a| to_dim(a, ranges))
    };
    match e {
        Expr::Int(v) => Ok(Dim::constant(*v)),
        Expr::Str(_) => Err("unexpected string".into()),
        Expr::Call { func, args } => match func.as_str() {
            "Integer" => arg(args, 0),
            "Zero" => Ok(Dim::constant(0)),
            "One" => Ok(Dim::constant(1)),
            "NegativeOne" => Ok(Dim::constant(-1)),
            "Symbol" => match args.first() {
                Some(Expr::Str(name))
                    if !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !name.starts_with(|c: char| c.is_ascii_digit()) =>
                {
                    Ok(Dim::symbol(name.clone()))
                }
                _ => Err("Symbol needs a plain name".into()),
            },
            "Add" => args.iter().try_fold(Dim::constant(0), |acc, a| Ok(acc.add(&to_dim(a, ranges)?))),
            "Mul" => args.iter().try_fold(Dim::constant(1), |acc, a| Ok(acc.mul(&to_dim(a, ranges)?))),
            // A polynomial has no max or min; the symbols' ranges often decide which operand
            // it is (`Max(0, s - 4095)` with `s <= 4094` is 0).
            "Max" | "Min" => {
                let want_max = func == "Max";
                let mut picked = arg(args, 0)?;
                for i in 1..args.len() {
                    let other = arg(args, i)?;
                    let (lo, hi) = linear_bounds(&picked.sub(&other), ranges)
                        .ok_or_else(|| format!("`{func}` of {picked} and {other}: no symbol range decides it"))?;
                    let picked_is_larger = match (lo, hi) {
                        (Some(l), _) if l >= 0 => true,
                        (_, Some(h)) if h <= 0 => false,
                        _ => return Err(format!("`{func}` of {picked} and {other}: the symbols' ranges allow either")),
                    };
                    if picked_is_larger != want_max {
                        picked = other;
                    }
                }
                Ok(picked)
            }
            "Pow" => {
                let base = arg(args, 0)?;
                let n = arg(args, 1)?.as_const().ok_or("non-constant exponent")?;
                Ok((0..n).fold(Dim::constant(1), |acc, _| acc.mul(&base)))
            }
            "FloorDiv" | "CleanDiv" => {
                let (a, b) = (arg(args, 0)?, arg(args, 1)?);
                if b.as_const() == Some(0) {
                    return Err("division by zero".into());
                }
                Ok(a.floor_div(&b))
            }
            "Mod" | "PythonMod" => {
                let (a, b) = (arg(args, 0)?, arg(args, 1)?);
                if b.as_const() == Some(0) {
                    return Err("modulo by zero".into());
                }
                Ok(a.modulo(&b))
            }
            other => Err(format!("`{other}` has no dim form")),
        },
    }
}

/// Convert an srepr expression to a [`Dim`].
#[cfg(test)]
pub fn parse_sym_expr(text: &str) -> Result<Dim, String> {
    parse_sym_expr_bounded(text, &Ranges::new()).map(|(d, _)| d)
}

/// The least and greatest value of `d` when it is a constant or `k·s + c` in one symbol, under
/// that symbol's range (`None`: unbounded on that side, or no such form or range).
pub fn linear_bounds(d: &Dim, ranges: &Ranges) -> Option<(Option<i64>, Option<i64>)> {
    if let Some(c) = d.as_const() {
        return Some((Some(c), Some(c)));
    }
    let mut symbols = d.symbols().into_iter();
    let (Some(s), None) = (symbols.next(), symbols.next()) else { return None };
    let at = |v: i64| d.eval(&BTreeMap::from([(s.clone(), v)])).ok();
    let (c, k) = (at(0)?, at(1)?.checked_sub(at(0)?)?);
    if Dim::symbol(s.clone()).scale(k).add(&Dim::constant(c)) != *d {
        return None;
    }
    let range = ranges.get(&s)?;
    let value = |v: i64| k.checked_mul(v).and_then(|x| x.checked_add(c));
    let (at_min, at_max) = (value(range.min), range.max.and_then(value));
    Some(if k >= 0 { (at_min, at_max) } else { (at_max, at_min) })
}

/// Like [`parse_sym_expr`], with a bound on the sum of the absolute values of the result's
/// coefficients (products of dims stay below `i64::MAX` while the product of bounds does), and
/// `Max`/`Min` decided by the symbols' `ranges`.
pub fn parse_sym_expr_bounded(text: &str, ranges: &Ranges) -> Result<(Dim, u128), String> {
    if text.len() > 1 << 16 {
        return Err("expression is too long".into());
    }
    let mut p = Parser { src: text.as_bytes(), pos: 0, nodes: 0 };
    match p.expr(0) {
        Ok(e) if p.peek().is_none() => {
            let b = bound(&e)?;
            let dim = to_dim(&e, ranges)?;
            // Held to the limits of a dim read from text, so the program's RON reads back.
            if !dim.fits_limits() {
                return Err("expression nests floor divisions too deeply or is too large".into());
            }
            Ok((dim, b.l1))
        }
        Ok(_) => Err(format!("unexpected text at byte {}", p.pos)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Dim {
        Dim::parse(s).unwrap()
    }

    #[test]
    fn reads_sympy_srepr() {
        let s = "Symbol('s27', positive=True, integer=True)";
        assert_eq!(parse_sym_expr(s), Ok(d("s27")));
        let add =
            "Add(Symbol('s27', positive=True, integer=True), Symbol('s64', positive=True, integer=True), Integer(-1))";
        assert_eq!(parse_sym_expr(add), Ok(d("s27 + s64 - 1")));
        assert_eq!(parse_sym_expr("Mul(Integer(8), Symbol('s0', integer=True))"), Ok(d("8*s0")));
        assert_eq!(parse_sym_expr("Pow(Symbol('s0'), Integer(2))"), Ok(d("s0*s0")));
        assert_eq!(parse_sym_expr("FloorDiv(Mul(Integer(4), Symbol('s0')), Integer(2))"), Ok(d("2*s0")));
        assert_eq!(parse_sym_expr("PythonMod(Symbol('s0'), Integer(3))"), Ok(d("s0 % 3")));
        assert_eq!(parse_sym_expr("Integer(12)"), Ok(Dim::constant(12)));
    }

    #[test]
    fn max_and_min_are_decided_by_ranges() {
        let ranges = Ranges::from([("s15".to_string(), SymRange { min: 2, max: Some(4093) })]);
        let max = "Max(Integer(0), Add(Symbol('s15', positive=True, integer=True), Integer(-4095)))";
        assert_eq!(parse_sym_expr_bounded(max, &ranges).map(|r| r.0), Ok(Dim::constant(0)));
        let min = "Min(Integer(4095), Symbol('s15', positive=True, integer=True))";
        assert_eq!(parse_sym_expr_bounded(min, &ranges).map(|r| r.0), Ok(d("s15")));
        let undecided = "Max(Integer(100), Symbol('s15'))";
        assert!(parse_sym_expr_bounded(undecided, &ranges).is_err(), "100 lies inside s15's range");
        assert!(parse_sym_expr_bounded(max, &Ranges::new()).is_err(), "no range, no decision");
    }

    #[test]
    fn rejects_what_dims_cannot_hold() {
        for bad in [
            "Max(Symbol('s0'), Integer(2))",
            "Mul(Rational(1, 2), Symbol('s0'))",
            "FloorDiv(Symbol('s0'), Integer(0))",
            "Pow(Symbol('s0'), Integer(-1))",
            "Symbol('a b')",
            "Add(",
            "",
            "Mul(Integer(4611686018427387904), Integer(4611686018427387904))",
            "Add(Integer(9223372036854775807), Integer(9223372036854775807))",
        ] {
            assert!(parse_sym_expr(bad).is_err(), "{bad}");
        }
        let deep = "Add(".repeat(200) + &")".repeat(200);
        assert!(parse_sym_expr(&deep).is_err());
        let wide = format!(
            "Pow(Add({}), Integer(16))",
            (0..50).map(|i| format!("Symbol('s{i}')")).collect::<Vec<_>>().join(", ")
        );
        assert!(parse_sym_expr(&wide).is_err());
    }

    /// Floor divisions nest one level per `FloorDiv`; past the dim limit the expression is
    /// refused, so every dim a program holds prints as text that reads back.
    #[test]
    fn nested_floor_divisions_stay_within_the_dim_limits() {
        let nest = |n: usize| {
            let mut e = "Symbol('s0')".to_string();
            // A symbolic divisor keeps each level a floor division of its own (`(x // 2) // 2` is
            // `x // 4`).
            for _ in 0..n {
                e = format!("FloorDiv({e}, Symbol('s1'))");
            }
            e
        };
        let ok = parse_sym_expr(&nest(genie_ir::dim::MAX_DIM_ATOM_DEPTH)).unwrap();
        assert_eq!(Dim::parse(&ok.to_string()), Ok(ok));
        assert!(parse_sym_expr(&nest(genie_ir::dim::MAX_DIM_ATOM_DEPTH + 1)).is_err());
    }
}
