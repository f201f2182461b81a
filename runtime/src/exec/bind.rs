//! Symbol bindings of one call, read from the shapes of the entry's inputs.

use genie_codegen::EntryPlan;
use genie_ir::{Dim, DimError, ValueId};

use super::{Bindings, ExecError};

fn dim_error(tensor: &str, e: DimError) -> ExecError {
    match e {
        DimError::Unbound(symbol) => {
            ExecError::UnboundSymbol { symbol, reason: format!("needed for the shape of `{tensor}`") }
        }
        other => ExecError::BadTensor { tensor: tensor.to_string(), reason: other.to_string() },
    }
}

/// Solve `d == value` for its one unbound symbol when `d` is linear in it (`s0 + 1`, `2*s0`).
fn solve(d: &Dim, value: i64, bindings: &Bindings) -> Option<(String, i64)> {
    let mut free = d.symbols().into_iter().filter(|s| !bindings.contains_key(s));
    let s = free.next()?;
    if free.next().is_some() {
        return None;
    }
    let at = |x: i64| {
        let mut b = bindings.clone();
        b.insert(s.clone(), x);
        d.eval(&b).ok()
    };
    let c = at(0)?;
    let a = at(1)?.checked_sub(c)?;
    let num = value.checked_sub(c)?;
    if a == 0 || num % a != 0 {
        return None;
    }
    let x = num / a;
    (at(x)? == value).then_some((s, x))
}

/// Bind every symbol of the entry from the shapes of its graph inputs (user and state), check each
/// input's full shape against its symbolic type and each symbol against its range.
///
/// `shape_of` gives the actual shape of an input tensor, or `None` when this caller does not have
/// it (a worker sees only some inputs): such inputs are neither read nor checked. A symbol that no
/// available input determines is an [`ExecError::UnboundSymbol`] unless no tensor of the entry uses
/// it.
pub fn bind_symbols(entry: &EntryPlan, shape_of: &dyn Fn(ValueId) -> Option<Vec<i64>>) -> Result<Bindings, ExecError> {
    let mut given = Vec::new();
    for port in &entry.inputs {
        let Some(shape) = shape_of(port.tensor) else { continue };
        let info = entry.tensors.get(&port.tensor).ok_or_else(|| ExecError::MissingTensor {
            tensor: port.tensor,
            name: port.name.clone(),
            reason: "an input that is not in the plan's tensor table".into(),
        })?;
        if shape.len() != info.ty.rank() || shape.iter().any(|&d| d < 0) {
            return Err(ExecError::ShapeMismatch {
                tensor: port.tensor,
                name: port.name.clone(),
                expected: info.ty.to_string(),
                got: format!("{shape:?}"),
            });
        }
        given.push((port, info, shape));
    }

    let mut bindings = Bindings::new();
    // Bare symbols first, from the sources codegen listed.
    for sym in &entry.symbols {
        for src in &sym.sources {
            if let Some((_, _, shape)) = given.iter().find(|(p, _, _)| p.tensor == src.tensor) {
                if let Some(&v) = shape.get(src.dim as usize) {
                    bindings.entry(sym.name.clone()).or_insert(v);
                    break;
                }
            }
        }
    }
    // Then symbols that only appear in expressions (`s0 + 1`), solved one at a time.
    loop {
        let mut progress = false;
        for (_, info, shape) in &given {
            for (d, &v) in info.ty.shape.iter().zip(shape) {
                if let Some((s, x)) = solve(d, v, &bindings) {
                    bindings.insert(s, x);
                    progress = true;
                }
            }
        }
        if !progress {
            break;
        }
    }

    for sym in &entry.symbols {
        match bindings.get(&sym.name) {
            Some(&value) => {
                if value < sym.min || sym.max.is_some_and(|m| value > m) {
                    return Err(ExecError::SymbolOutOfRange {
                        symbol: sym.name.clone(),
                        value,
                        min: sym.min,
                        max: sym.max,
                    });
                }
            }
            None => {
                let user = entry.tensors.values().find(|t| t.ty.shape.iter().any(|d| d.symbols().contains(&sym.name)));
                if let Some(t) = user {
                    let reason = if sym.sources.is_empty() {
                        format!("no input dim determines it (used by `{}`: {})", t.name, t.ty)
                    } else {
                        let names: Vec<String> = sym
                            .sources
                            .iter()
                            .map(|s| entry.tensors.get(&s.tensor).map_or(s.tensor.to_string(), |t| t.name.clone()))
                            .collect();
                        format!("it is read from {}, which was not given", names.join(", "))
                    };
                    return Err(ExecError::UnboundSymbol { symbol: sym.name.clone(), reason });
                }
            }
        }
    }

    for (port, info, shape) in &given {
        let mut want = Vec::with_capacity(shape.len());
        for d in &info.ty.shape {
            want.push(d.eval(&bindings).map_err(|e| dim_error(&port.name, e))?);
        }
        if &want != shape {
            let values: Vec<String> = info
                .ty
                .shape
                .iter()
                .flat_map(|d| d.symbols())
                .filter_map(|s| bindings.get(&s).map(|v| format!("{s}={v}")))
                .collect();
            let mut expected = format!("{want:?} ({})", info.ty);
            if !values.is_empty() {
                expected.push_str(&format!(" with {}", values.join(", ")));
            }
            return Err(ExecError::ShapeMismatch {
                tensor: port.tensor,
                name: port.name.clone(),
                expected,
                got: format!("{shape:?}"),
            });
        }
    }
    Ok(bindings)
}

/// The concrete shape of a plan tensor under bindings.
pub fn concrete_shape(entry: &EntryPlan, tensor: ValueId, bindings: &Bindings) -> Result<Vec<i64>, ExecError> {
    let info = entry.tensors.get(&tensor).ok_or_else(|| ExecError::MissingTensor {
        tensor,
        name: String::new(),
        reason: "not in the plan's tensor table".into(),
    })?;
    info.ty.shape.iter().map(|d| d.eval(bindings).map_err(|e| dim_error(&info.name, e))).collect()
}
