//! The search: a dynamic program over the atom order for contiguous (pipeline) cuts, then local
//! moves judged by the exact evaluation.
//!
//! The dynamic program assigns consecutive runs of atoms to devices, each device at most one run,
//! devices taken in a fixed order (several orders are tried: the spec's, fastest first, largest
//! memory first). Its segment cost is the compute of the run on that device plus the client's
//! inputs and outputs it handles; its transition cost is the bytes live across the cut over the
//! link between the two devices. Memory of a run (distinct weights, KV slots, the largest
//! activation estimate) beyond the device's capacity is the first thing minimised. For a chain
//! this is exact and the result optimal; for other graphs it is a good start that the local moves
//! (move one atom to a neighbour's device, or to a device already holding its weights) refine.

use std::collections::BTreeSet;

use super::model::{better, Ctx, Eval, Kind};
use super::Policy;

/// More atoms than this are grouped into consecutive blocks for the dynamic program.
const MAX_DP_BLOCKS: usize = 384;
/// Local-move limits.
const MAX_SWEEPS: usize = 16;
const MAX_EVALS: usize = 3000;

#[derive(Clone, Copy, Debug)]
struct C {
    overflow: u64,
    frac: f64,
    time: f64,
}

impl C {
    fn plus(self, o: C) -> C {
        C { overflow: self.overflow.saturating_add(o.overflow), frac: self.frac.max(o.frac), time: self.time + o.time }
    }
    fn key(self, p: Policy) -> (u64, f64, f64) {
        match p {
            Policy::MinLatency => (self.overflow, self.time, 0.0),
            Policy::BalanceMemory => (self.overflow, self.frac, self.time),
        }
    }
}

/// Per-block aggregates.
struct Agg {
    blocks: Vec<(usize, usize)>,
    /// `comp[d][b]` prefix sums of compute seconds over blocks.
    comp: Vec<Vec<f64>>,
    /// `cut[e][b]`: bytes crossing the boundary after block `b`.
    cut: Vec<Vec<u64>>,
    /// `inb[e][b]`, `outb[e][b]` prefix sums of client bytes.
    inb: Vec<Vec<u64>>,
    outb: Vec<Vec<u64>>,
    /// `need[t][i - t]`: memory of blocks `t..=i` on one device.
    need: Vec<Vec<u64>>,
}

fn aggregate(ctx: &Ctx) -> Agg {
    let m = ctx.atoms();
    let per = m.div_ceil(MAX_DP_BLOCKS).max(1);
    let blocks: Vec<(usize, usize)> = (0..m).step_by(per).map(|s| (s, (s + per).min(m))).collect();
    let nb = blocks.len();
    let mut block_of = vec![0; m];
    for (b, &(s, t)) in blocks.iter().enumerate() {
        block_of[s..t].iter_mut().for_each(|x| *x = b);
    }
    let k = ctx.k;
    let ne = ctx.entries.len();
    let mut comp = vec![vec![0.0; nb + 1]; k];
    let mut cut = vec![vec![0u64; nb]; ne];
    let mut cutm = vec![vec![0u64; nb]; ne];
    let mut inb = vec![vec![0u64; nb + 1]; ne];
    let mut outb = vec![vec![0u64; nb + 1]; ne];
    let mut local = vec![vec![0u64; nb]; ne];
    let mut in_mem = vec![vec![0u64; nb]; ne];
    let mut weights: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); nb];
    let mut consts = vec![0u64; nb];
    let mut kv = vec![0u64; nb];
    for (e, ent) in ctx.entries.iter().enumerate() {
        let block = |n: genie_ir::NodeId| block_of[ctx.units.node_atom[e][n.index()]];
        for n in &ent.order {
            let b = block(*n);
            for (d, c) in comp.iter_mut().enumerate() {
                c[b + 1] += ent.node_time[n.index() * k + d];
            }
            for o in &ent.outputs[n.index()] {
                if ent.vals[o.index()].alias.is_none() {
                    local[e][b] = local[e][b].saturating_add(ent.vals[o.index()].mem);
                }
            }
        }
        let mut diff = vec![0i128; nb + 1];
        let mut diffm = vec![0i128; nb + 1];
        for (vi, val) in ent.vals.iter().enumerate() {
            let mut cons: Vec<usize> = val.users.iter().map(|n| block(*n)).collect();
            cons.sort_unstable();
            cons.dedup();
            match &val.kind {
                Kind::UserInput => {
                    for &c in &cons {
                        inb[e][c + 1] = inb[e][c + 1].saturating_add(val.bytes);
                        in_mem[e][c] = in_mem[e][c].saturating_add(val.mem);
                    }
                }
                Kind::Weight(w) => {
                    for &c in &cons {
                        weights[c].insert(*w);
                    }
                }
                Kind::Const => {
                    for &c in &cons {
                        consts[c] = consts[c].saturating_add(val.mem);
                    }
                }
                Kind::StateInput(_) => {}
                Kind::Node(p) => {
                    let pb = block(*p);
                    let id = genie_ir::ValueId(vi as u32);
                    if ent.user_outputs.contains(&id) {
                        outb[e][pb + 1] = outb[e][pb + 1].saturating_add(val.bytes);
                    }
                    let lo = cons.iter().copied().chain([pb]).min().unwrap_or(pb);
                    let hi = cons.iter().copied().chain([pb]).max().unwrap_or(pb);
                    if hi > lo {
                        diff[lo] += val.bytes as i128;
                        diff[hi] -= val.bytes as i128;
                        diffm[lo] += val.mem as i128;
                        diffm[hi] -= val.mem as i128;
                    }
                }
            }
        }
        let (mut run, mut runm) = (0i128, 0i128);
        for b in 0..nb {
            run += diff[b];
            runm += diffm[b];
            cut[e][b] = run.max(0) as u64;
            cutm[e][b] = runm.max(0) as u64;
        }
        for b in 0..nb {
            inb[e][b + 1] = inb[e][b + 1].saturating_add(inb[e][b]);
            outb[e][b + 1] = outb[e][b + 1].saturating_add(outb[e][b]);
        }
    }
    for c in comp.iter_mut() {
        for b in 0..nb {
            c[b + 1] += c[b];
        }
    }
    for (s, slot) in ctx.slots.iter().enumerate() {
        let _ = s;
        if let Some(a) = slot.atom {
            kv[block_of[a]] = kv[block_of[a]].saturating_add(slot.mem);
        }
    }
    let act: Vec<u64> = (0..nb)
        .map(|b| {
            (0..ne)
                .map(|e| {
                    let before = if b > 0 { cutm[e][b - 1] } else { 0 };
                    before.saturating_add(in_mem[e][b]).saturating_add(local[e][b])
                })
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut need = Vec::with_capacity(nb);
    for t in 0..nb {
        let mut seen: BTreeSet<usize> = BTreeSet::new();
        let (mut w, mut c, mut s, mut a) = (0u64, 0u64, 0u64, 0u64);
        let mut row = Vec::with_capacity(nb - t);
        for i in t..nb {
            for &x in &weights[i] {
                if seen.insert(x) {
                    w = w.saturating_add(ctx.weights[x].1);
                }
            }
            c = c.saturating_add(consts[i]);
            s = s.saturating_add(kv[i]);
            a = a.max(act[i]);
            row.push(w.saturating_add(c).saturating_add(s).saturating_add(a));
        }
        need.push(row);
    }
    Agg { blocks, comp, cut, inb, outb, need }
}

/// The dynamic program for one device order; returns the device of every atom.
fn dp(ctx: &Ctx, agg: &Agg, ord: &[usize]) -> Vec<usize> {
    let nb = agg.blocks.len();
    let kk = ord.len();
    let k = ctx.k;
    let ne = ctx.entries.len();
    let client = k;
    let seg = |t: usize, i: usize, d: usize| -> C {
        let need = agg.need[t][i - t];
        let cap = ctx.cluster.devices[d].memory;
        let mut time = agg.comp[d][i + 1] - agg.comp[d][t];
        for e in 0..ne {
            time += ctx.links[client][d].time(agg.inb[e][i + 1] - agg.inb[e][t]);
            time += ctx.links[d][client].time(agg.outb[e][i + 1] - agg.outb[e][t]);
        }
        C { overflow: need.saturating_sub(cap), frac: need as f64 / cap as f64, time }
    };
    let trans =
        |from: usize, to: usize, b: usize| -> f64 { (0..ne).map(|e| ctx.links[from][to].time(agg.cut[e][b])).sum() };
    let policy = ctx.policy;
    // best[i * kk + j]: atoms `0..i` placed, last run on ord[j].
    let mut best: Vec<Option<(C, usize, usize)>> = vec![None; (nb + 1) * kk];
    for i in 1..=nb {
        for t in 0..i {
            for j in 0..kk {
                let d = ord[j];
                let s = seg(t, i - 1, d);
                let mut cand: Option<(C, usize, usize)> = None;
                if t == 0 {
                    cand = Some((s, 0, usize::MAX));
                } else {
                    for jp in 0..j {
                        if let Some((pc, _, _)) = best[t * kk + jp] {
                            let tr = trans(ord[jp], d, t - 1);
                            let c = pc.plus(C { overflow: 0, frac: 0.0, time: tr }).plus(s);
                            if cand.is_none_or(|(x, _, _)| better(c.key(policy), x.key(policy))) {
                                cand = Some((c, t, jp));
                            }
                        }
                    }
                }
                if let Some((c, tt, jp)) = cand {
                    let slot = &mut best[i * kk + j];
                    if slot.is_none_or(|(x, _, _)| better(c.key(policy), x.key(policy))) {
                        *slot = Some((c, tt, jp));
                    }
                }
            }
        }
    }
    let mut end = None;
    for j in 0..kk {
        if let Some((c, _, _)) = best[nb * kk + j] {
            if end.is_none_or(|(x, _): (C, usize)| better(c.key(policy), x.key(policy))) {
                end = Some((c, j));
            }
        }
    }
    let mut assign = vec![ord.first().copied().unwrap_or(0); ctx.atoms()];
    let Some((_, mut j)) = end else { return assign };
    let mut i = nb;
    while i > 0 {
        let Some((_, t, jp)) = best[i * kk + j] else { break };
        for b in t..i {
            let (s, e) = agg.blocks[b];
            assign[s..e].iter_mut().for_each(|x| *x = ord[j]);
        }
        i = t;
        if jp == usize::MAX {
            break;
        }
        j = jp;
    }
    assign
}

/// Device orders to try: the spec's, fastest first, largest memory first.
fn orders(ctx: &Ctx) -> Vec<Vec<usize>> {
    let k = ctx.k;
    let devs = &ctx.cluster.devices;
    let spec: Vec<usize> = (0..k).collect();
    let mut fast = spec.clone();
    fast.sort_by(|a, b| devs[*b].peak_flops().total_cmp(&devs[*a].peak_flops()));
    let mut big = spec.clone();
    big.sort_by(|a, b| devs[*b].memory.cmp(&devs[*a].memory));
    let mut out = vec![spec];
    for o in [fast, big] {
        if !out.contains(&o) {
            out.push(o);
        }
    }
    out
}

/// Find the best assignment of atoms to devices, with its evaluation.
pub(crate) fn search(ctx: &Ctx) -> (Vec<usize>, Eval) {
    let policy = ctx.policy;
    if ctx.atoms() == 0 {
        let assign = Vec::new();
        let ev = ctx.evaluate(&assign);
        return (assign, ev);
    }
    let agg = aggregate(ctx);
    let mut best: Option<(Vec<usize>, Eval)> = None;
    for ord in orders(ctx) {
        let assign = dp(ctx, &agg, &ord);
        let ev = ctx.evaluate(&assign);
        if best.as_ref().is_none_or(|(_, b)| better(ev.key(policy), b.key(policy))) {
            best = Some((assign, ev));
        }
    }
    let (mut assign, mut ev) = best.expect("at least one device order");
    // Atoms sharing a weight: moving next to a copy saves a replica.
    let mut weight_atoms: Vec<Vec<usize>> = vec![Vec::new(); ctx.weights.len()];
    for (e, ent) in ctx.entries.iter().enumerate() {
        for val in &ent.vals {
            if let Kind::Weight(w) = val.kind {
                for n in &val.users {
                    let a = ctx.units.node_atom[e][n.index()];
                    if !weight_atoms[w].contains(&a) {
                        weight_atoms[w].push(a);
                    }
                }
            }
        }
    }
    let mut atom_weights: Vec<Vec<usize>> = vec![Vec::new(); ctx.atoms()];
    for (w, atoms) in weight_atoms.iter().enumerate() {
        if atoms.len() > 1 {
            for &a in atoms {
                atom_weights[a].push(w);
            }
        }
    }
    let m = ctx.atoms();
    let mut evals = 0;
    for _ in 0..MAX_SWEEPS {
        let mut improved = false;
        for a in 0..m {
            let mut cands: BTreeSet<usize> = BTreeSet::new();
            if a > 0 {
                cands.insert(assign[a - 1]);
            }
            if a + 1 < m {
                cands.insert(assign[a + 1]);
            }
            for &w in &atom_weights[a] {
                for &b in &weight_atoms[w] {
                    cands.insert(assign[b]);
                }
            }
            // An atom that overflows its device may go anywhere.
            if ev.overflow > 0 {
                cands.extend(0..ctx.k);
            }
            cands.remove(&assign[a]);
            for d in cands {
                if evals >= MAX_EVALS {
                    break;
                }
                let old = assign[a];
                assign[a] = d;
                let cand = ctx.evaluate(&assign);
                evals += 1;
                if better(cand.key(policy), ev.key(policy)) {
                    ev = cand;
                    improved = true;
                    break;
                }
                assign[a] = old;
            }
        }
        if !improved || evals >= MAX_EVALS {
            break;
        }
    }
    (assign, ev)
}
