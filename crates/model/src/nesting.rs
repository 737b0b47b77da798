//! A bound on how deep a query's syntax tree can be, computed from its
//! tokens before the query is parsed.
//!
//! Parsers, planners and evaluators walk a query's syntax tree recursively,
//! and a tree deeper than a worker thread's stack aborts the whole process
//! (Rust cannot recover from a stack overflow). The tree's depth is bounded
//! by its brackets and operators: inside one pair of brackets, `n` operators
//! build a tree at most `n` deep (`a + b + c` is a chain of two), and every
//! bracketed group (parentheses of a call, an aggregation or a sub-expression)
//! adds one level to what it contains. [`DepthMeter`] adds these up token by
//! token, so a query is refused as soon as the bound passes the limit, before
//! the parser allocates anything for it.

/// Deepest syntax tree a PromQL or LogQL query may have. Real queries stay
/// far below it (Grafana dashboards and Prometheus mixins nest under 20);
/// the query engine's recursion needs a few kilobytes of stack per level.
pub const MAX_QUERY_DEPTH: usize = 256;

/// The error when a query is too deep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooDeep {
    pub limit: usize,
}

impl std::fmt::Display for TooDeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "query is nested too deeply: more than {} levels of parentheses, function calls, subqueries and chained operators",
            self.limit
        )
    }
}

impl std::error::Error for TooDeep {}

/// One bracketed group being read.
#[derive(Default)]
struct Group {
    /// Operators in the current argument at this level.
    ops: usize,
    /// Deepest closed group within the current argument.
    child: usize,
    /// Deepest argument of this group already finished (`,` seen).
    finished: usize,
}

impl Group {
    fn current(&self) -> usize {
        self.ops + self.child
    }
}

/// Adds up the depth bound of a token stream (see the module docs).
pub struct DepthMeter {
    limit: usize,
    /// The open groups, outermost (the whole query) first.
    groups: Vec<Group>,
    /// Sum of `ops + 1` over the open groups: a lower bound of the final
    /// bound, so passing the limit can be reported at once.
    path: usize,
}

impl DepthMeter {
    /// A meter refusing trees deeper than `limit`.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            groups: vec![Group::default()],
            path: 1,
        }
    }

    fn check(&self, depth: usize) -> Result<(), TooDeep> {
        if depth > self.limit {
            Err(TooDeep { limit: self.limit })
        } else {
            Ok(())
        }
    }

    /// An opening bracket.
    pub fn open(&mut self) -> Result<(), TooDeep> {
        self.groups.push(Group::default());
        self.path += 1;
        self.check(self.path)
    }

    /// A closing bracket; unbalanced ones are left to the parser to report.
    pub fn close(&mut self) -> Result<(), TooDeep> {
        if self.groups.len() < 2 {
            return Ok(());
        }
        let Some(g) = self.groups.pop() else {
            return Ok(());
        };
        self.path -= g.ops + 1;
        let depth = 1 + g.finished.max(g.current());
        if let Some(parent) = self.groups.last_mut() {
            parent.child = parent.child.max(depth);
        }
        self.check(self.path + depth)
    }

    /// A separator between the arguments of a call (`,`).
    pub fn separator(&mut self) {
        if let Some(g) = self.groups.last_mut() {
            g.finished = g.finished.max(g.current());
            self.path -= g.ops;
            g.ops = 0;
            g.child = 0;
        }
    }

    /// An operator, or any postfix or prefix that wraps an operand in a
    /// new tree node (a unary minus, `offset`, a range or subquery `[...]`).
    pub fn operator(&mut self) -> Result<(), TooDeep> {
        if let Some(g) = self.groups.last_mut() {
            g.ops += 1;
            self.path += 1;
        }
        self.check(self.path)
    }

    /// The bound once every token was seen.
    pub fn finish(mut self) -> Result<usize, TooDeep> {
        while self.groups.len() > 1 {
            self.close()?;
        }
        let depth = self
            .groups
            .last()
            .map_or(0, |g| 1 + g.finished.max(g.current()));
        self.check(depth)?;
        Ok(depth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Meters a toy syntax: `(` `)` `,` and `+` as tokens, the rest ignored.
    fn depth(src: &str, limit: usize) -> Result<usize, TooDeep> {
        let mut m = DepthMeter::new(limit);
        for c in src.chars() {
            match c {
                '(' => m.open()?,
                ')' => m.close()?,
                ',' => m.separator(),
                '+' => m.operator()?,
                _ => {}
            }
        }
        m.finish()
    }

    #[test]
    fn chains_and_nesting_add_up() {
        assert_eq!(depth("a", 10), Ok(1));
        assert_eq!(depth("a+b+c", 10), Ok(3));
        assert_eq!(depth("f(a+b)", 10), Ok(3));
        // Arguments count apart: the deepest one matters.
        assert_eq!(depth("f(a+b+c, d)", 10), Ok(4));
        assert_eq!(depth("f(a, b+c+d)", 10), Ok(4));
        assert_eq!(depth("(a+b)+(c+d)", 10), Ok(4));
        assert_eq!(depth("((((a))))", 10), Ok(5));
    }

    #[test]
    fn refuses_past_the_limit_without_reading_everything() {
        let deep = "(".repeat(100_000);
        let mut m = DepthMeter::new(MAX_QUERY_DEPTH);
        let mut refused_at = None;
        for (i, _) in deep.chars().enumerate() {
            if m.open().is_err() {
                refused_at = Some(i);
                break;
            }
        }
        assert_eq!(refused_at, Some(MAX_QUERY_DEPTH - 1));
        assert!(depth(&"a+".repeat(300), MAX_QUERY_DEPTH).is_err());
        assert!(depth(&"a+".repeat(200), MAX_QUERY_DEPTH).is_ok());
        let e = depth(&"(".repeat(300), MAX_QUERY_DEPTH).unwrap_err();
        assert!(e.to_string().contains("more than 256 levels"), "{e}");
    }

    #[test]
    fn unbalanced_brackets_are_left_to_the_parser() {
        assert_eq!(depth("a))", 10), Ok(1));
        assert_eq!(depth("((a", 10), Ok(3));
    }
}
