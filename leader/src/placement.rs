//! Where slices live. Compute nodes, in registration order, hold
//! consecutive global slice numbers; each slice is mirrored on the next
//! compute node (the last one's on the first), so losing one node loses no
//! slice.

use basin_proto as pb;

#[derive(Clone, Debug)]
pub struct Holder {
    pub node: u64,
    pub addr: String,
}

#[derive(Clone, Debug)]
pub struct SliceHome {
    pub primary: Holder,
    pub mirror: Option<Holder>,
}

/// Global slice number → its primary and mirror.
#[derive(Clone, Debug, Default)]
pub struct SliceMap {
    pub slices: Vec<SliceHome>,
    /// First global slice of each compute node, in node order.
    pub firsts: Vec<u32>,
}

impl SliceMap {
    pub fn new(computes: &[pb::WhCompute]) -> Self {
        let n = computes.len();
        let mut slices = Vec::new();
        let mut firsts = Vec::new();
        for (i, c) in computes.iter().enumerate() {
            firsts.push(slices.len() as u32);
            let mirror = (n > 1).then(|| {
                let m = &computes[(i + 1) % n];
                Holder {
                    node: m.id,
                    addr: m.addr.clone(),
                }
            });
            for _ in 0..c.slices {
                slices.push(SliceHome {
                    primary: Holder {
                        node: c.id,
                        addr: c.addr.clone(),
                    },
                    mirror: mirror.clone(),
                });
            }
        }
        Self { slices, firsts }
    }

    pub fn len(&self) -> usize {
        self.slices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slices.is_empty()
    }

    pub fn node(&self, slice: u32) -> Option<u64> {
        self.slices.get(slice as usize).map(|h| h.primary.node)
    }

    /// The nodes holding a slice: primary first, then the mirror.
    pub fn holders(&self, slice: u32) -> Vec<Holder> {
        self.slices
            .get(slice as usize)
            .map(|h| {
                std::iter::once(h.primary.clone())
                    .chain(h.mirror.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The slices a node holds a copy of (as primary or mirror).
    pub fn held_by(&self, node: u64) -> Vec<u32> {
        (0..self.slices.len() as u32)
            .filter(|s| self.holders(*s).iter().any(|h| h.node == node))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compute(id: u64, slices: u32) -> pb::WhCompute {
        pb::WhCompute {
            id,
            addr: format!("n{id}"),
            slices,
            uuid: String::new(),
        }
    }

    #[test]
    fn mirrors_on_the_next_node() {
        let m = SliceMap::new(&[compute(1, 2), compute(2, 2), compute(3, 1)]);
        assert_eq!(m.len(), 5);
        assert_eq!(m.firsts, vec![0, 2, 4]);
        let h: Vec<(u64, Option<u64>)> = m
            .slices
            .iter()
            .map(|s| (s.primary.node, s.mirror.as_ref().map(|x| x.node)))
            .collect();
        assert_eq!(
            h,
            vec![
                (1, Some(2)),
                (1, Some(2)),
                (2, Some(3)),
                (2, Some(3)),
                (3, Some(1))
            ]
        );
        assert_eq!(m.held_by(1), vec![0, 1, 4]);
        let single = SliceMap::new(&[compute(7, 2)]);
        assert!(single.slices.iter().all(|s| s.mirror.is_none()));
    }
}
