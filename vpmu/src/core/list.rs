//! An intrusive doubly linked list over slab ids (the kernel keeps groups in
//! an rb-tree ordered by `group_index`; moving a group to the tail gives it
//! the next index). Here moving to the tail is an O(1) unlink + append, and
//! nothing allocates.

use crate::util::slab::Slab;

pub(crate) const NIL: u32 = u32::MAX;

/// Links of an element that sits in at most one [`List`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    prev: u32,
    next: u32,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            prev: NIL,
            next: NIL,
        }
    }
}

pub(crate) trait Linked {
    fn link(&self) -> &Link;
    fn link_mut(&mut self) -> &mut Link;
}

#[derive(Debug)]
pub(crate) struct List {
    head: u32,
    tail: u32,
    len: usize,
}

impl Default for List {
    fn default() -> Self {
        List {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

impl List {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn front(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }

    pub(crate) fn next<T: Linked>(&self, slab: &Slab<T>, id: u32) -> Option<u32> {
        let n = slab.get(id)?.link().next;
        (n != NIL).then_some(n)
    }

    pub(crate) fn push_back<T: Linked>(&mut self, slab: &mut Slab<T>, id: u32) {
        let tail = self.tail;
        if let Some(e) = slab.get_mut(id) {
            *e.link_mut() = Link {
                prev: tail,
                next: NIL,
            };
        } else {
            return;
        }
        match slab.get_mut(tail) {
            Some(t) => t.link_mut().next = id,
            None => self.head = id,
        }
        self.tail = id;
        self.len += 1;
    }

    /// Unlinks `id`, which must be in this list.
    pub(crate) fn remove<T: Linked>(&mut self, slab: &mut Slab<T>, id: u32) {
        let Some(link) = slab.get(id).map(|e| *e.link()) else {
            return;
        };
        match slab.get_mut(link.prev) {
            Some(p) => p.link_mut().next = link.next,
            None => self.head = link.next,
        }
        match slab.get_mut(link.next) {
            Some(n) => n.link_mut().prev = link.prev,
            None => self.tail = link.prev,
        }
        if let Some(e) = slab.get_mut(id) {
            *e.link_mut() = Link::default();
        }
        self.len = self.len.saturating_sub(1);
    }

    pub(crate) fn move_to_tail<T: Linked>(&mut self, slab: &mut Slab<T>, id: u32) {
        if self.tail != id {
            self.remove(slab, id);
            self.push_back(slab, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct N(Link);
    impl Linked for N {
        fn link(&self) -> &Link {
            &self.0
        }
        fn link_mut(&mut self) -> &mut Link {
            &mut self.0
        }
    }

    fn collect(l: &List, s: &Slab<N>) -> Vec<u32> {
        let mut v = vec![];
        let mut c = l.front();
        while let Some(i) = c {
            v.push(i);
            c = l.next(s, i);
        }
        v
    }

    #[test]
    fn ops() {
        let mut s = Slab::default();
        let mut l = List::default();
        let ids: Vec<u32> = (0..4).map(|_| s.insert(N::default())).collect();
        for &i in &ids {
            l.push_back(&mut s, i);
        }
        l.move_to_tail(&mut s, 0);
        assert_eq!(collect(&l, &s), vec![1, 2, 3, 0]);
        l.remove(&mut s, 2);
        assert_eq!(collect(&l, &s), vec![1, 3, 0]);
        l.remove(&mut s, 1);
        l.remove(&mut s, 0);
        assert_eq!(collect(&l, &s), vec![3]);
        assert_eq!(l.len(), 1);
    }
}
