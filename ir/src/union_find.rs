//! Disjoint sets over `0..n`, with the smaller index as each set's root so that results are
//! deterministic. Used for state slots (connected state bindings) and placement's atoms.

/// Disjoint sets over `0..n`.
#[derive(Clone, Debug)]
pub struct UnionFind(Vec<usize>);

impl UnionFind {
    /// `n` singleton sets.
    pub fn new(n: usize) -> UnionFind {
        UnionFind((0..n).collect())
    }

    /// Add one singleton set; returns its element.
    pub fn push(&mut self) -> usize {
        self.0.push(self.0.len());
        self.0.len() - 1
    }

    /// The root of `x`'s set (the smallest element ever merged into it first).
    pub fn find(&mut self, x: usize) -> usize {
        let mut root = x;
        while self.0[root] != root {
            root = self.0[root];
        }
        let mut cur = x;
        while self.0[cur] != root {
            let next = self.0[cur];
            self.0[cur] = root;
            cur = next;
        }
        root
    }

    /// Merge the sets of `a` and `b`; the smaller root becomes the root of both.
    pub fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            let (lo, hi) = if a < b { (a, b) } else { (b, a) };
            self.0[hi] = lo;
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smaller_element_is_the_root() {
        let mut uf = UnionFind::new(5);
        uf.union(4, 2);
        uf.union(3, 4);
        assert_eq!(uf.find(3), 2);
        assert_eq!(uf.find(4), 2);
        uf.union(1, 3);
        assert_eq!(uf.find(2), 1);
        assert_eq!(uf.find(0), 0);
    }
}
