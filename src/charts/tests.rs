//! The charts' tests. Output is checked by a small well-formedness checker written for the
//! SVG these functions emit (elements, quoted attributes, the five entities), rather than
//! a new XML dependency: it is enough to catch an unbalanced tag, a raw `<` or `&` from a
//! label, or a broken attribute.

use sosq::protocol::Timestamp;

use super::*;

/// Whether `svg` is one well-formed element tree of the kind the charts write.
fn well_formed(svg: &str) -> Result<(), String> {
    let mut open: Vec<&str> = Vec::new();
    let mut rest = svg;
    let mut done = false;
    loop {
        let Some(start) = rest.find('<') else {
            text(rest)?;
            if !rest.is_empty() {
                return Err(format!("text outside the root: {rest:?}"));
            }
            break;
        };
        text(&rest[..start])?;
        if start > 0 && open.is_empty() {
            return Err("text outside the root".into());
        }
        if done {
            return Err("a second root".into());
        }
        let end = rest[start..]
            .find('>')
            .ok_or_else(|| "an unclosed tag".to_string())?;
        let tag = &rest[start + 1..start + end];
        rest = &rest[start + end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            match open.pop() {
                Some(top) if top == name => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        } else {
            let (body, alone) = match tag.strip_suffix('/') {
                Some(body) => (body, true),
                None => (tag, false),
            };
            let name_end = body.find(' ').unwrap_or(body.len());
            let name = &body[..name_end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(format!("a bad element name {name:?}"));
            }
            attributes(&body[name_end..])?;
            if !alone {
                open.push(name);
            }
        }
        done = open.is_empty();
    }
    if !open.is_empty() || !done {
        return Err(format!("unclosed elements {open:?}"));
    }
    Ok(())
}

/// Character data: no `<`, and every `&` starts one of the five entities.
fn text(data: &str) -> Result<(), String> {
    if data.contains('<') {
        return Err(format!("a raw < in {data:?}"));
    }
    for (i, _) in data.match_indices('&') {
        let after = &data[i + 1..];
        if !["amp;", "lt;", "gt;", "quot;", "#39;"]
            .iter()
            .any(|entity| after.starts_with(entity))
        {
            return Err(format!("a raw & in {data:?}"));
        }
    }
    if data.chars().any(|c| c.is_control() && c != '\n') {
        return Err(format!("a control character in {data:?}"));
    }
    Ok(())
}

/// ` name="value"` pairs, each name once.
fn attributes(mut list: &str) -> Result<(), String> {
    let mut seen = Vec::new();
    loop {
        list = list.trim_start();
        if list.is_empty() {
            return Ok(());
        }
        let eq = list
            .find("=\"")
            .ok_or(format!("a bad attribute in {list:?}"))?;
        let name = &list[..eq];
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || name.is_empty() {
            return Err(format!("a bad attribute name {name:?}"));
        }
        if seen.contains(&name) {
            return Err(format!("{name} twice"));
        }
        seen.push(name);
        let value_end = list[eq + 2..]
            .find('"')
            .ok_or(format!("an unclosed value in {list:?}"))?;
        text(&list[eq + 2..eq + 2 + value_end])?;
        list = &list[eq + 2 + value_end + 1..];
        if !list.is_empty() && !list.starts_with(' ') {
            return Err(format!("no space after an attribute: {list:?}"));
        }
    }
}

/// The value of attribute `name` in each `<rect class="bar…"` of `svg`, in order.
fn bar_attribute(svg: &str, name: &str) -> Vec<f64> {
    svg.split("<rect class=\"bar")
        .skip(1)
        .map(|rect| {
            let at = rect.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            let value = &rect[at..];
            value[..value.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}

/// What the page's Content-Security-Policy forbids, and what a label must never become.
fn no_script_or_style(svg: &str) {
    assert!(!svg.contains("style="), "inline style in {svg}");
    assert!(
        !svg.to_ascii_lowercase().contains("<script"),
        "script in {svg}"
    );
    assert!(
        !svg.split(' ')
            .any(|word| word.starts_with("on") && word.contains("=\"")),
        "an event handler attribute in {svg}"
    );
}

fn days(n: usize) -> Vec<String> {
    (0..n as u64)
        .map(|day| utc_day(Timestamp(day * 86_400_000)))
        .collect()
}

#[test]
fn the_checker_catches_broken_svg() {
    assert!(well_formed("<svg><g></g></svg>").is_ok());
    assert!(well_formed("<svg x=\"1\"><rect y=\"2\"/></svg>").is_ok());
    for broken in [
        "<svg><g></svg>",
        "<svg>a<b</svg>",
        "<svg>a & b</svg>",
        "<svg x=\"1></svg>",
        "<svg></svg><svg></svg>",
        "<svg x=\"1\" x=\"2\"></svg>",
        "<svg>",
    ] {
        assert!(well_formed(broken).is_err(), "{broken}");
    }
}

#[test]
fn every_chart_is_well_formed_without_script_or_style() {
    let names: Vec<(String, u64)> = (0..21)
        .map(|i| (format!("expert number {i} with a long name"), i * 3))
        .collect();
    let closed: Vec<u64> = (0..92).map(|i| i % 7).collect();
    let expired: Vec<u64> = (0..92).map(|i| i % 3).collect();
    let points: Vec<(Timestamp, u64)> = (0..336u64)
        .map(|i| (Timestamp(100 * 86_400_000 + i * 3_600_000), i % 11))
        .collect();
    let charts = [
        bar_chart("Cases per expert", &names, "cases"),
        bar_chart("Median first response", &[("critical", 4u64)], "min"),
        stacked_bar_chart(
            "Outcomes",
            &days(92),
            &[
                Series {
                    name: "closed",
                    values: &closed,
                },
                Series {
                    name: "expired",
                    values: &expired,
                },
                Series {
                    name: "deleted",
                    values: &[],
                },
            ],
        ),
        line_chart("Queue", &points, "waiting"),
        line_chart("Queue today", &points[..24], ""),
        line_chart("One point", &points[5..6], ""),
    ];
    for svg in &charts {
        well_formed(svg).unwrap_or_else(|e| panic!("{e} in {svg}"));
        no_script_or_style(svg);
        assert!(!svg.contains(NO_DATA));
    }
    // A long window labels every k-th day only.
    assert!(charts[2].matches("<text x=").count() < 92);
}

#[test]
fn labels_and_titles_are_escaped() {
    let evil = "<script>alert('x')</script>\"&\u{7}";
    let charts = [
        bar_chart(evil, &[(evil, 3u64), ("ok", 1)], evil),
        stacked_bar_chart(
            evil,
            &[evil],
            &[Series {
                name: evil,
                values: &[2],
            }],
        ),
        line_chart(evil, &[(Timestamp(0), 1), (Timestamp(3_600_000), 2)], evil),
        bar_chart(evil, &[(evil, 0u64)], ""),
    ];
    for svg in &charts {
        well_formed(svg).unwrap_or_else(|e| panic!("{e} in {svg}"));
        no_script_or_style(svg);
        assert!(svg.contains("&lt;script&gt;alert(&#39;x&#39;)"), "{svg}");
    }
    assert_eq!(
        escape("a<b>&\"'\u{0}"),
        "a&lt;b&gt;&amp;&quot;&#39;\u{fffd}"
    );
}

#[test]
fn the_largest_value_reaches_the_top_and_the_rest_scale() {
    let svg = bar_chart("t", &[("a", 5u64), ("b", 10), ("c", 0)], "");
    assert_eq!(
        bar_attribute(&svg, "height"),
        vec![PLOT_HEIGHT / 2.0, PLOT_HEIGHT, 0.0]
    );
    assert_eq!(bar_attribute(&svg, "y")[1], TOP);

    // Stacked: the tallest column's parts together reach the top.
    let svg = stacked_bar_chart(
        "t",
        &["d1", "d2"],
        &[
            Series {
                name: "closed",
                values: &[2, 6],
            },
            Series {
                name: "expired",
                values: &[1, 2],
            },
        ],
    );
    let heights = bar_attribute(&svg, "height");
    assert_eq!(heights.len(), 4);
    // In order: day one's closed and expired, then day two's.
    assert!(
        (heights[2] + heights[3] - PLOT_HEIGHT).abs() < 0.2,
        "{heights:?}"
    );
    assert!((heights[0] + heights[1] - PLOT_HEIGHT * 3.0 / 8.0).abs() < 0.2);
    assert!(
        svg.contains(">closed</text>") && svg.contains(">expired</text>"),
        "a legend"
    );

    // Line: the peak at the top, zero on the baseline, first and last at the ends.
    let svg = line_chart(
        "t",
        &[
            (Timestamp(0), 0),
            (Timestamp(1_000), 8),
            (Timestamp(2_000), 4),
        ],
        "",
    );
    let expected = format!(
        "points=\"{LEFT:.1},{BASE:.1} {:.1},{TOP:.1} {:.1},{:.1}\"",
        LEFT + PLOT_WIDTH / 2.0,
        LEFT + PLOT_WIDTH,
        BASE - PLOT_HEIGHT / 2.0
    );
    assert!(svg.contains(&expected), "{svg}");
    assert!(
        svg.contains("<title>01-01 00:00 UTC: 8</title>"),
        "hover value: {svg}"
    );
}

#[test]
fn empty_data_says_so() {
    let no_bars: [(&str, u64); 0] = [];
    let no_columns: [&str; 0] = [];
    for svg in [
        bar_chart("Cases per expert", &no_bars, ""),
        bar_chart("Cases per expert", &[("ana", 0u64)], ""),
        stacked_bar_chart("Outcomes", &no_columns, &[]),
        stacked_bar_chart(
            "Outcomes",
            &["d1"],
            &[Series {
                name: "closed",
                values: &[0],
            }],
        ),
        line_chart("Queue", &[], ""),
        line_chart("Queue", &[(Timestamp(0), 0), (Timestamp(1), 0)], ""),
    ] {
        well_formed(&svg).unwrap_or_else(|e| panic!("{e} in {svg}"));
        assert!(svg.contains(NO_DATA), "{svg}");
        assert!(!svg.contains("class=\"bar") && !svg.contains("polyline"));
    }
}

#[test]
fn value_ticks_are_round_and_few() {
    assert_eq!(tick_step(1), 1);
    assert_eq!(tick_step(5), 1);
    assert_eq!(tick_step(6), 2);
    assert_eq!(tick_step(10), 2);
    assert_eq!(tick_step(11), 5);
    assert_eq!(tick_step(48), 10);
    assert_eq!(tick_step(1_000), 200);
    assert_eq!(tick_step(u64::MAX), 5_000_000_000_000_000_000);
    // The largest values draw (no overflow stepping past them).
    well_formed(&bar_chart("t", &[("a", u64::MAX)], "")).unwrap();
    let svg = bar_chart("t", &[("a", 48u64)], "");
    let ticks: Vec<&str> = ["0", "10", "20", "30", "40"].into();
    for tick in ticks {
        assert!(svg.contains(&format!(">{tick}</text>")), "tick {tick}");
    }
    assert!(
        !svg.contains(">50</text>"),
        "no tick above the largest value"
    );
}

#[test]
fn utc_labels() {
    let at = Timestamp(1_764_597_600_000); // 2025-12-01 14:00 UTC
    assert_eq!(utc_day(at), "2025-12-01");
    assert_eq!(utc_minute(at), "12-01 14:00");
}
