/* rtlibvirt's "Real-time" page in Cockpit.
 *
 * Every fact on this page comes from the rtlibvirt that installed it (its absolute path is in
 * config.json, written by `rtlibvirt cockpit install`), run through cockpit.spawn with
 * superuser "try": `status --json`, `check NAME --json`, `hook status --json --domain NAME`,
 * `host-prep verify /etc/rtlibvirt/host.yaml --json`, the probe's kept results (the JSON
 * `probe` writes to its results folder), `probe` and `noise` to measure, `tune --dry-run`
 * then `tune` to make a domain real-time. The page decides nothing itself: refusals are the
 * CLI's, shown as it says them. Text from the host reaches the page only as text nodes.
 */
"use strict";

(function () {
    const SVG = "http://www.w3.org/2000/svg";
    // A domain name the probe keeps a result file for (rtlibvirt.probe.saved._NAME).
    const KEPT_NAME = /^[A-Za-z0-9_+][A-Za-z0-9_.+:-]{0,199}$/;
    const HOST_YAML = "/etc/rtlibvirt/host.yaml";
    // A first TUNING.yaml for a domain of `vcpus` vCPUs: vCPU 0 stays the guest's
    // housekeeping vCPU when there are more (as docs/tune.md suggests).
    function defaultTuning(vcpus) {
        const realtime = vcpus > 2 ? "1-" + (vcpus - 1) : vcpus === 2 ? "1" : "0";
        return [
            "# What `rtlibvirt tune` changes: the cpu, memory_backing, numa and isolation",
            "# sections of a vm.yaml (see docs/tune.md). The rest of the domain stays.",
            "cpu:",
            "  pinning: auto",
            "  emulator: auto",
            "  realtime:",
            "    vcpus: " + JSON.stringify(realtime),
            "memory_backing:",
            "  hugepages: none",
            "",
        ].join("\n");
    }

    const state = {
        config: null,
        admin: null,
        noise: null, // is `rtlibvirt noise` there? (null: not asked yet)
        status: null,
        busy: {}, // domain name -> what runs for it
        measuring: {}, // domain name -> {lines, result, error}
        virtType: "kvm",
        duration: "10s",
    };

    /* ---- theme: follow the shell's style (light, dark, or the system's) ---------------- */

    function applyTheme(style) {
        let chosen = style;
        try {
            chosen = chosen || window.localStorage.getItem("shell:style") || "auto";
        } catch (e) {
            chosen = chosen || "auto";
        }
        const system = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
        const dark = chosen === "dark" || (chosen === "auto" && system);
        document.documentElement.classList.toggle("pf-v5-theme-dark", dark);
    }
    applyTheme();
    window.addEventListener("storage", function (event) {
        if (event.key === "shell:style") applyTheme();
    });
    window.addEventListener("cockpit-style", function (event) {
        applyTheme(event.detail && event.detail.style);
    });
    if (window.matchMedia) {
        window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", function () {
            applyTheme();
        });
    }

    /* ---- DOM helpers: text only, never HTML from the host ------------------------------ */

    function h(tag, attrs) {
        const node = document.createElement(tag);
        for (const key in attrs || {}) {
            const value = attrs[key];
            if (value === null || value === undefined || value === false) continue;
            if (key === "class") node.className = value;
            else if (key === "text") node.textContent = value;
            else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
            else node.setAttribute(key, value === true ? "" : String(value));
        }
        for (let i = 2; i < arguments.length; i++) append(node, arguments[i]);
        return node;
    }

    function append(node, child) {
        if (child === null || child === undefined || child === false) return;
        if (Array.isArray(child)) child.forEach(function (c) { append(node, c) });
        else if (typeof child === "string" || typeof child === "number") node.appendChild(document.createTextNode(String(child)));
        else node.appendChild(child);
    }

    function svg(tag, attrs) {
        const node = document.createElementNS(SVG, tag);
        for (const key in attrs || {}) {
            if (key === "text") node.textContent = attrs[key];
            else node.setAttribute(key, String(attrs[key]));
        }
        return node;
    }

    function replace(id) {
        const node = document.getElementById(id);
        while (node.firstChild) node.removeChild(node.firstChild);
        for (let i = 1; i < arguments.length; i++) append(node, arguments[i]);
        return node;
    }

    function label(text, color, extra) {
        return h("span", { class: "pf-v5-c-label pf-m-compact" + (color ? " pf-m-" + color : "") + (extra ? " " + extra : "") },
                 h("span", { class: "pf-v5-c-label__content" }, h("span", { class: "pf-v5-c-label__text", text: text })));
    }

    function button(text, kind, onclick, attrs) {
        return h("button", Object.assign({ type: "button", class: "pf-v5-c-button pf-m-" + kind, onclick: onclick, text: text }, attrs || {}));
    }

    function cpulist(cpus) {
        const sorted = (cpus || []).slice().sort(function (a, b) { return a - b });
        const parts = [];
        for (let i = 0; i < sorted.length; i++) {
            let j = i;
            while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
            parts.push(i === j ? String(sorted[i]) : sorted[i] + "-" + sorted[j]);
            i = j;
        }
        return parts.join(",") || "none";
    }

    // Text with `quoted` commands (as the CLI writes its hints) shown as code.
    function prose(text) {
        return String(text).split(/(`[^`]+`)/).map(function (part) {
            return /^`[^`]+`$/.test(part) ? h("code", { class: "rtl-code", text: part.slice(1, -1) }) : part;
        });
    }

    function descriptions(rows) {
        return h("dl", { class: "pf-v5-c-description-list pf-m-horizontal pf-m-compact rtl-dl" },
                 rows.filter(Boolean).map(function (row) {
                     return h("div", { class: "pf-v5-c-description-list__group" },
                              h("dt", { class: "pf-v5-c-description-list__term" },
                                h("span", { class: "pf-v5-c-description-list__text", text: row[0] })),
                              h("dd", { class: "pf-v5-c-description-list__description" },
                                h("div", { class: "pf-v5-c-description-list__text" }, row[1])));
                 }));
    }

    /* ---- alerts: the CLI's error and hint lines as PatternFly alerts ------------------- */

    // `rtlibvirt` prints "error: MESSAGE" and "  hint: HINT" on stderr (errors.RtlibvirtError.render);
    // click prints "Error: ..." for usage errors.
    function cliError(ex, output, what) {
        const text = [ex && ex.message, output].filter(Boolean).join("\n");
        const lines = text.split("\n");
        let message = null;
        const hints = [];
        lines.forEach(function (line) {
            const trimmed = line.trim();
            let m = /^(?:error|Error|internal error): (.*)$/.exec(trimmed);
            if (m && message === null) message = m[1];
            m = /^hint: (.*)$/.exec(trimmed);
            if (m) hints.push(m[1]);
        });
        if (ex && (ex.problem === "access-denied" || ex.problem === "not-found")) {
            return {
                title: (what ? what + ": " : "") + "cannot run " + state.config.rtlibvirt + " as this user (" + cockpit.message(ex) + ")",
                hint: "the page runs the rtlibvirt that installed it: install rtlibvirt where every user may run it (e.g. a venv under /opt), then `rtlibvirt cockpit install` again",
                exit: null,
            };
        }
        if (message === null) {
            message = (ex && ex.problem === "not-found") ? "rtlibvirt was not found at " + state.config.rtlibvirt
                : (lines.filter(function (l) { return l.trim() }).slice(-1)[0] || cockpit.message(ex));
        }
        return { title: what ? what + ": " + message : message, hint: hints.join(" "), exit: ex ? ex.exit_status : null };
    }

    function alert(kind, title, description) {
        const box = h("div", { class: "pf-v5-c-alert pf-m-inline pf-m-" + kind, role: "alert" },
                      h("div", { class: "pf-v5-c-alert__icon", "aria-hidden": "true", text: kind === "danger" ? "!" : kind === "warning" ? "⚠" : kind === "success" ? "✓" : "i" }),
                      h("p", { class: "pf-v5-c-alert__title" },
                        h("span", { class: "pf-v5-screen-reader", text: kind + " alert:" }), prose(title)),
                      description ? h("div", { class: "pf-v5-c-alert__description" }, description.split("\n").map(function (line) {
                          return h("div", {}, prose(line.trim()));
                      })) : null);
        const close = h("div", { class: "pf-v5-c-alert__action" },
                        button("×", "plain", function () { box.remove() }, { "aria-label": "Close alert" }));
        box.appendChild(close);
        return box;
    }

    function showError(error) {
        const area = document.getElementById("alerts");
        area.appendChild(h("div", { class: "pf-v5-l-stack__item" }, alert("danger", error.title, error.hint)));
    }

    /* ---- running rtlibvirt ---------------------------------------------------------------- */

    function spawn(args, options) {
        return cockpit.spawn([state.config.rtlibvirt].concat(args),
                             Object.assign({ superuser: "try", err: "message" }, options || {}));
    }

    // The JSON a command prints; exit 3 ("differs": findings, drift) still has its JSON.
    function runJson(args) {
        return new Promise(function (resolve, reject) {
            spawn(args).then(function (out) {
                try { resolve(JSON.parse(out)) } catch (e) { reject({ title: "rtlibvirt " + args[0] + ": output is not JSON", hint: String(e) }) }
            }, function (ex, out) {
                if (ex && ex.exit_status === 3 && out) {
                    try { resolve(JSON.parse(out)); return } catch (e) { /* fall through */ }
                }
                reject(cliError(ex, null, "rtlibvirt " + args.filter(function (a) { return !a.startsWith("-") }).slice(0, 2).join(" ")));
            });
        });
    }

    function readKept(name) {
        if (!KEPT_NAME.test(name) || !state.config.probe_results) return Promise.resolve(null);
        const file = cockpit.file(state.config.probe_results + "/" + name + ".json", { syntax: JSON, superuser: "try" });
        return new Promise(function (resolve) {
            file.read().then(function (data) { file.close(); resolve(data) },
                             function () { file.close(); resolve(null) });
        });
    }

    /* ---- the CPU map ---------------------------------------------------------------------- */

    const ROLES = {
        housekeeping: ["Housekeeping", "grey"],
        isolated: ["Isolated", "blue"],
        "isolated nohz": ["Isolated, nohz_full", "purple"],
        offline: ["Offline", "red"],
        "?": null, // the host's /sys cannot be read from here (a remote or test URI)
    };

    function hookedBy(status) {
        const result = {};
        const hook = status.hook || {};
        Object.keys(hook).forEach(function (name) {
            hook[name].forEach(function (cpu) { (result[cpu] = result[cpu] || []).push(name) });
        });
        return result;
    }

    function cpuTile(cpu, hooked) {
        const role = cpu.role in ROLES ? ROLES[cpu.role] : [cpu.role, "grey"];
        const holders = cpu.held_by.map(function (holder) {
            const fifo = holder.policy ? holder.policy.toUpperCase() + " " + holder.priority : null;
            return h("li", { class: "rtl-holder" + (holder.policy ? " rtl-fifo" : ""), "data-domain": holder.domain },
                     h("span", { class: "rtl-run " + (holder.running ? "rtl-on" : "rtl-off"), title: holder.running ? "running" : "shut off", text: holder.running ? "●" : "○" }),
                     h("span", { class: "rtl-holder-name", text: holder.domain }),
                     h("span", { class: "rtl-holder-what", text: " " + holder.what }),
                     fifo ? label(fifo, "orange") : null);
        });
        const isolatedFor = hooked[cpu.id] || [];
        return h("div", {
            class: "rtl-cpu rtl-role-" + cpu.role.replace(/[^a-z]/g, "-") + (isolatedFor.length ? " rtl-hooked" : "") + (cpu.held_by.length ? " rtl-held" : ""),
            "data-cpu": cpu.id,
            "data-role": cpu.role,
            "data-hook-isolated": isolatedFor.join(",") || null,
        },
                 h("div", { class: "rtl-cpu-head" }, h("span", { class: "rtl-cpu-name", text: "CPU " + cpu.id }), role ? label(role[0], role[1]) : null),
                 holders.length ? h("ul", { class: "rtl-holders" }, holders) : h("div", { class: "rtl-subtle", text: "free" }),
                 isolatedFor.length ? h("div", { class: "rtl-hook-note", text: "isolated by the hook for " + isolatedFor.join(", ") }) : null);
    }

    function renderCpus(status) {
        const byId = {};
        status.cpus.forEach(function (cpu) { byId[cpu.id] = cpu });
        const hooked = hookedBy(status);
        replace("cpu-legend",
                label("Housekeeping", "grey"), " ", label("Isolated", "blue"), " ", label("Isolated, nohz_full", "purple"), " ",
                label("FIFO vCPU", "orange"), " ", h("span", { class: "rtl-legend-hook", text: "isolated by the hook now" }), " ",
                h("span", { class: "rtl-subtle", text: "● running ○ shut off" }));
        replace("cpu-map", status.nodes.map(function (node) {
            const pages = Object.keys(node.free_hugepages_by_kib || {}).map(function (kib) {
                return (kib === "1048576" ? "1G" : "2M") + " " + node.free_hugepages_by_kib[kib];
            });
            return h("div", { class: "rtl-node", "data-node": node.id },
                     h("h3", { class: "pf-v5-c-title pf-m-md", text: "NUMA node " + node.id + (pages.length ? " · free hugepages " + pages.join(", ") : "") }),
                     h("div", { class: "rtl-cores" }, node.cores.map(function (core) {
                         return h("div", { class: "rtl-core", title: "core " + cpulist(core) },
                                  core.map(function (id) { return byId[id] ? cpuTile(byId[id], hooked) : null }));
                     })));
        }));
    }

    /* ---- the header and the host's readiness --------------------------------------------- */

    function renderHostLine(status, hook) {
        const kernel = status.kernel || {};
        const parts = [status.topology];
        const labels = [];
        if (kernel.release) parts.push("kernel " + kernel.release);
        if (status.kernel) labels.push(kernel.preempt_rt ? label("PREEMPT_RT", "green") : label("not PREEMPT_RT", "orange"));
        if (hook) {
            if (!hook.installed) labels.push(label("hook not installed", "red"));
            else if (hook.needs_restart) labels.push(label("hook installed, libvirtd must restart", "orange"));
            else if (!hook.current) labels.push(label("hook out of date", "orange"));
            else labels.push(label("hook in use", "green"));
        }
        replace("host-line", parts.join(" · "), " ", labels.map(function (l) { return [l, " "] }));
    }

    function renderHostPrep(result, error) {
        if (error) {
            replace("host-prep",
                    h("p", {}, prose("Not prepared by `rtlibvirt host-prep` (" + error.title + ")")),
                    error.hint ? h("p", { class: "rtl-subtle" }, prose(error.hint)) : null,
                    h("p", { class: "rtl-subtle" }, prose("`rtlibvirt host-prep plan HOST.yaml`, then `apply`, sets the kernel command line, services and runtime values; its HOST.yaml is then kept as " + HOST_YAML + ", which this page verifies.")));
            return;
        }
        const pending = result.rows.filter(function (r) { return r.status === "reboot pending" });
        const differ = result.rows.filter(function (r) { return r.status !== "ok" && r.status !== "reboot pending" });
        const headline = result.matches ? label("matches " + HOST_YAML, "green")
            : pending.length && !differ.length ? label("kernel command line pending: reboot", "orange")
                : label(result.differ + " of " + result.rows.length + " differ", "red");
        replace("host-prep", h("p", {}, headline),
                h("ul", { class: "rtl-rows" }, result.rows.map(function (row) {
                    const color = row.status === "ok" ? "green" : row.status === "reboot pending" ? "orange" : "red";
                    return h("li", { "data-status": row.status }, label(row.status, color), " ", h("strong", { text: row.what }), " ",
                             h("span", { class: "rtl-subtle", text: row.status === "ok" ? row.found : "wanted " + row.wanted + ", found " + row.found }));
                })));
    }

    /* ---- real-time VMs -------------------------------------------------------------------- */

    function isRealtime(dom) {
        return dom.rtlibvirt || dom.realtime_vcpus.length > 0;
    }

    function findingList(check) {
        if (!check) return h("p", { class: "rtl-subtle", text: "Checking…" });
        if (check.error) return alert("danger", check.error.title, check.error.hint);
        if (check.clean) return h("p", {}, label("ready for real time", "green"));
        return h("ul", { class: "rtl-findings" }, check.findings.map(function (f) {
            const color = f.severity === "error" ? "red" : f.severity === "warning" ? "orange" : "blue";
            return h("li", { "data-code": f.code }, label(f.severity, color), " ", h("span", { text: f.what }),
                     f.fix ? h("div", { class: "rtl-fix" }, prose("fix: " + f.fix)) : null);
        }));
    }

    function summaryOf(conf) {
        const s = conf.summary || {};
        return conf.configuration + ": max " + s.max_us + " µs, p99.9 " + s["p99.9_us"] + " µs, avg " + s.avg_us + " µs (" + s.samples + " samples)";
    }

    const COLORS = ["var(--rtl-plot-1)", "var(--rtl-plot-2)", "var(--rtl-plot-3)"];

    // The latency histograms of a probe result: log y axis, as rt-tests/OSADL plot them.
    function plot(result) {
        const confs = result.configurations || [];
        let maxBucket = 1;
        let maxCount = 1;
        const series = confs.map(function (conf) {
            const merged = {};
            (conf.threads || []).forEach(function (t) {
                Object.keys(t.histogram || {}).forEach(function (b) { merged[b] = (merged[b] || 0) + t.histogram[b] });
            });
            Object.keys(merged).forEach(function (b) {
                maxBucket = Math.max(maxBucket, Number(b));
                maxCount = Math.max(maxCount, merged[b]);
            });
            return merged;
        });
        const W = 420;
        const H = 200;
        const L = 48;
        const B = 30;
        const top = Math.ceil(Math.log10(maxCount + 1));
        const graph = svg("svg", { viewBox: "0 0 " + W + " " + H, class: "rtl-plot", role: "img", "aria-label": "latency histogram" });
        const x = function (b) { return L + (W - L - 10) * b / (maxBucket + 1) };
        const y = function (c) { return H - B - (H - B - 10) * (c > 0 ? Math.log10(c + 1) / Math.max(top, 1) : 0) };
        graph.appendChild(svg("line", { x1: L, y1: H - B, x2: W - 10, y2: H - B, class: "rtl-axis" }));
        graph.appendChild(svg("line", { x1: L, y1: 10, x2: L, y2: H - B, class: "rtl-axis" }));
        for (let d = 0; d <= top; d++) {
            graph.appendChild(svg("text", { x: L - 6, y: y(Math.pow(10, d) - 1) + 4, "text-anchor": "end", class: "rtl-tick", text: d === 0 ? "0" : "1e" + d }));
        }
        [0, Math.round(maxBucket / 2), maxBucket].forEach(function (b) {
            graph.appendChild(svg("text", { x: x(b), y: H - B + 16, "text-anchor": "middle", class: "rtl-tick", text: b + " µs" }));
        });
        graph.appendChild(svg("text", { x: W / 2, y: H - 2, "text-anchor": "middle", class: "rtl-tick", text: "latency (µs); samples on a log scale" }));
        series.forEach(function (merged, i) {
            const points = Object.keys(merged).map(Number).sort(function (a, b) { return a - b })
                .map(function (b) { return x(b) + "," + y(merged[b]) });
            if (points.length) graph.appendChild(svg("polyline", { points: points.join(" "), fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 2 }));
        });
        return graph;
    }

    function latency(dom) {
        const kept = dom._kept;
        const run = state.measuring[dom.name];
        const parts = [];
        if (run) {
            if (run.error) parts.push(alert("danger", run.error.title, run.error.hint));
            else if (run.done && run.noise) parts.push(noiseResult(run.noise));
            else if (!run.done) {
                parts.push(h("div", { class: "pf-v5-c-progress pf-m-sm rtl-progress" },
                             h("div", { class: "pf-v5-c-progress__description", text: run.what }),
                             h("div", { class: "pf-v5-c-progress__bar", role: "progressbar", "aria-valuetext": "running" },
                               h("div", { class: "pf-v5-c-progress__indicator rtl-indeterminate" }))));
            }
            if (run.lines.length) parts.push(h("pre", { class: "rtl-log rtl-measure-log", text: run.lines.slice(-8).join("\n") }));
        }
        if (kept) {
            const when = kept.measured_at ? new Date(kept.measured_at * 1000).toLocaleString() : "at an unknown time";
            parts.push(h("div", { class: "rtl-kept", "data-kept": dom.name },
                         h("p", {}, "Last probe: " + when + " (" + (kept.virt_type === "qemu" ? "TCG: not real-time figures" : "KVM") + ", " + kept.duration_s + " s each)"),
                         h("ul", { class: "rtl-rows" }, (kept.configurations || []).map(function (c, i) {
                             return h("li", { class: "rtl-series-" + i, text: summaryOf(c) });
                         })),
                         plot(kept)));
        } else if (!run) {
            parts.push(h("p", { class: "rtl-subtle", text: "No probe result kept on this host yet." }));
        }
        return parts;
    }

    function noiseResult(noise) {
        const rows = (noise.cpus || []).map(function (cpu) {
            const who = cpu.domain ? cpu.domain + (cpu.vcpu !== null ? " vCPU " + cpu.vcpu : "") : "";
            return h("li", { "data-cpu": cpu.cpu },
                     h("strong", { text: "CPU " + cpu.cpu + (who ? " (" + who + ")" : "") + ": " }),
                     cpu.disturbances_per_s.toFixed(1) + " disturbances/s, " + cpu.us_lost_per_s.toFixed(1) + " µs lost/s",
                     h("ul", {}, (cpu.sources || []).map(function (s) {
                         return h("li", {}, s.kind + " " + s.name + ": " + s.count + "×, max " + s.max_us + " µs",
                                  s.hint ? h("div", { class: "rtl-fix" }, prose("fix: " + s.hint)) : null);
                     })));
        });
        return h("div", { class: "rtl-noise" }, h("p", { text: "Noise over " + noise.duration_s + " s (" + noise.method + ")" }), h("ul", { class: "rtl-rows" }, rows));
    }

    function vmCard(dom) {
        const settings = descriptions([
            ["State", dom.running ? label("running", "green") : label("shut off", "grey")],
            ["vCPUs", dom.vcpus + (dom.realtime_vcpus.length ? " (real-time: " + cpulist(dom.realtime_vcpus) + ")" : "")],
            ["Host CPUs", dom.pinned_cpus.length ? cpulist(dom.pinned_cpus) : "not pinned"],
            ["Emulator", dom.emulator_cpus ? cpulist(dom.emulator_cpus) : "not pinned"],
            ["Hook", state.status.hook && state.status.hook[dom.name] ? "isolates CPUs " + cpulist(state.status.hook[dom.name]) : (dom.running ? "isolates nothing for it" : "nothing while shut off")],
        ]);
        const busy = state.busy[dom.name];
        const measure = button(busy ? busy + "…" : "Measure", "primary", function () { measureVm(dom) },
                               { disabled: busy || !state.admin ? true : null, "data-action": "measure", title: dom.running ? "noise on its CPUs (or the probe)" : "the probe: cyclictest in a probe guest with its tuning" });
        const log = dom._log || [];
        return h("article", { class: "pf-v5-c-card pf-m-compact rtl-vm", "data-vm": dom.name },
                 h("div", { class: "pf-v5-c-card__title" }, h("h3", { class: "pf-v5-c-card__title-text", text: dom.name })),
                 h("div", { class: "pf-v5-c-card__body" },
                   settings,
                   h("h4", { class: "rtl-sub", text: "Readiness" }), findingList(dom._check),
                   h("h4", { class: "rtl-sub", text: "Latency" }), latency(dom),
                   h("details", { class: "rtl-details" }, h("summary", { text: "Hook log (" + log.length + " lines)" }),
                     h("pre", { class: "rtl-log", text: log.join("\n") || "no lines about this VM" }))),
                 h("div", { class: "pf-v5-c-card__footer" }, measure));
    }

    function renderVms() {
        const status = state.status;
        const rt = status.domains.filter(isRealtime);
        const others = status.domains.filter(function (d) { return !isRealtime(d) });
        replace("rt-vms", rt.length ? rt.map(vmCard)
            : h("div", { class: "pf-v5-c-empty-state pf-m-sm" }, h("div", { class: "pf-v5-c-empty-state__content" },
                h("h3", { class: "pf-v5-c-title pf-m-lg", text: "No real-time VM" }),
                h("div", { class: "pf-v5-c-empty-state__body" }, prose("Define one with `rtlibvirt define vm.yaml`, or make a VM below real-time.")))));
        replace("other-vms", others.length ? h("ul", { class: "rtl-others" }, others.map(function (dom) {
            return h("li", { "data-vm": dom.name },
                     h("span", { class: "rtl-other-name", text: dom.name }), " ",
                     dom.running ? label("running", "green") : label("shut off", "grey"), " ",
                     h("span", { class: "rtl-subtle", text: dom.vcpus + " vCPUs, " + (dom.pinned_cpus.length ? "on CPUs " + cpulist(dom.pinned_cpus) : "not pinned") }), " ",
                     button("Make real-time", "secondary", function () { tuneDialog(dom.name, dom.vcpus) },
                            { "data-action": "tune", disabled: state.admin ? null : true }));
        })) : h("p", { class: "rtl-subtle", text: "Every VM on this host is real-time." }));
    }

    /* ---- Measure: the probe for a stopped VM, noise for a running one ---------------------- */

    function measureVm(dom) {
        const useNoise = dom.running && state.noise;
        const run = { lines: [], done: false, what: useNoise ? "Measuring the noise on its CPUs…" : "Probing (this boots a probe guest)…" };
        state.measuring[dom.name] = run;
        state.busy[dom.name] = "Measuring";
        renderVms();
        const settings = document.getElementById("measure-virt-type");
        // options first, then "--": a domain name is never taken for an option
        const args = useNoise ? ["noise", "--duration", "5s", "--json", "--", dom.name]
            : ["probe", "--virt-type", settings ? settings.value : state.virtType,
               "--duration", document.getElementById("measure-duration").value || state.duration, "--", dom.name];
        let partial = "";
        const proc = spawn(args, { err: useNoise ? "message" : "out" });
        proc.stream(function (data) {
            if (useNoise) { partial += data; return }
            partial += data;
            const lines = partial.split("\n");
            partial = lines.pop();
            lines.forEach(function (l) { if (l.trim()) run.lines.push(l) });
            const node = document.querySelector('[data-vm="' + CSS.escape(dom.name) + '"] .rtl-measure-log');
            if (node) node.textContent = run.lines.slice(-8).join("\n");
            else renderVms();
        });
        proc.then(function () {
            run.done = true;
            if (useNoise) {
                try { run.noise = JSON.parse(partial) } catch (e) { run.error = { title: "rtlibvirt noise: output is not JSON", hint: String(e) } }
            }
            delete state.busy[dom.name];
            return readKept(dom.name).then(function (kept) { dom._kept = kept; if (!useNoise) delete state.measuring[dom.name]; renderVms() });
        }, function (ex) {
            run.done = true;
            run.error = cliError(ex, useNoise ? null : run.lines.concat([partial]).join("\n"), "rtlibvirt " + args[0]);
            delete state.busy[dom.name];
            renderVms();
        });
    }

    /* ---- Make real-time: tune --dry-run, then tune on confirmation ------------------------ */

    function writeTuning(name, text) {
        // The tuning goes to the VM's own file under /run (tune reads a file): the same
        // bounded YAML reader and the same checks as on the command line.
        const path = "/run/rtlibvirt/cockpit/" + name + ".tuning.yaml";
        return cockpit.spawn(["mkdir", "-p", "-m", "0700", "/run/rtlibvirt/cockpit"], { superuser: "try", err: "message" })
            .then(function () { return cockpit.file(path, { superuser: "try" }).replace(text) })
            .then(function () { return path });
    }

    function tuneDialog(name, vcpus) {
        const textarea = h("textarea", { class: "rtl-yaml", rows: 10, spellcheck: "false", "aria-label": "TUNING.yaml", id: "tune-yaml" });
        textarea.value = defaultTuning(vcpus);
        const diff = h("div", { id: "tune-diff" });
        const apply = button("Apply", "primary", doApply, { disabled: true, "data-action": "apply" });
        const preview = button("Show changes", "secondary", doPreview, { "data-action": "preview" });
        let path = null;
        function close() { replace("dialog-root") }
        function doPreview() {
            apply.disabled = true;
            replace("tune-diff", h("p", { class: "rtl-subtle", text: "rtlibvirt tune " + name + " --dry-run …" }));
            if (!KEPT_NAME.test(name)) {
                replace("tune-diff", alert("danger", "This page cannot tune a domain named " + JSON.stringify(name), "use `rtlibvirt tune` on the command line"));
                return;
            }
            writeTuning(name, textarea.value).then(function (written) {
                path = written;
                return spawn(["tune", "--dry-run", "--", name, path], { err: "out" });
            }).then(function (out) {
                replace("tune-diff", h("pre", { class: "rtl-diff", "data-diff": "" }, out.split("\n").map(function (line) {
                    const cls = line.startsWith("+") ? "rtl-add" : line.startsWith("-") ? "rtl-del" : null;
                    return h("span", { class: cls }, line + "\n");
                })));
                apply.disabled = /already tuned; nothing would change/.test(out);
            }, function (ex, out) {
                const error = cliError(ex, out, "rtlibvirt tune --dry-run");
                replace("tune-diff", alert("danger", error.title, error.hint));
            });
        }
        function doApply() {
            apply.disabled = true;
            preview.disabled = true;
            spawn(["tune", "--", name, path], { err: "out" }).then(function (out) {
                close();
                const area = document.getElementById("alerts");
                const lines = out.split("\n").filter(function (l) { return l.trim() });
                const title = lines.filter(function (l) { return l.startsWith("Tuned domain") })[0] || lines[0] || "Tuned " + name;
                area.appendChild(h("div", { class: "pf-v5-l-stack__item" },
                                   alert("success", title, lines.filter(function (l) { return l !== title }).join("\n"))));
                refresh();
            }, function (ex, out) {
                const error = cliError(ex, out, "rtlibvirt tune");
                replace("tune-diff", alert("danger", error.title, error.hint));
                preview.disabled = false;
            });
        }
        replace("dialog-root", h("div", { class: "pf-v5-c-backdrop" }, h("div", { class: "pf-v5-l-bullseye" },
            h("div", { class: "pf-v5-c-modal-box pf-m-md rtl-modal", role: "dialog", "aria-modal": "true", "aria-labelledby": "tune-title" },
              h("div", { class: "pf-v5-c-modal-box__close" }, button("×", "plain", close, { "aria-label": "Close" })),
              h("header", { class: "pf-v5-c-modal-box__header" }, h("h1", { class: "pf-v5-c-modal-box__title", id: "tune-title", text: "Make " + name + " real-time" })),
              h("div", { class: "pf-v5-c-modal-box__body" },
                h("p", { text: "rtlibvirt tune changes only the real-time parts of the domain (pinning, FIFO vCPUs, memory backing, balloon, USB, its metadata for the hook); everything else stays. Edit the tuning, look at the changes, then apply." }),
                textarea, diff),
              h("footer", { class: "pf-v5-c-modal-box__footer" }, apply, " ", preview, " ", button("Cancel", "link", close))))));
        textarea.focus();
    }

    /* ---- loading everything --------------------------------------------------------------- */

    function refresh() {
        const button = document.getElementById("refresh");
        button.disabled = true;
        document.body.setAttribute("data-loaded", "false");
        const hook = runJson(["hook", "status", "--json"]).catch(function () { return null });
        return runJson(["status", "--json"]).then(function (status) {
            state.status = status;
            renderCpus(status);
            renderVms();
            const line = hook.then(function (h) { renderHostLine(status, h) });
            const prep = runJson(["host-prep", "verify", HOST_YAML, "--json"])
                .then(function (r) { renderHostPrep(r, null) }, function (e) { renderHostPrep(null, e) });
            return Promise.all([line, prep].concat(status.domains.filter(isRealtime).map(function (dom) {
                return Promise.all([
                    runJson(["check", "--json", "--", dom.name]).catch(function (e) { return { error: e } }),
                    runJson(["hook", "status", "--json", "--domain", dom.name, "--lines", "30"]).catch(function () { return null }),
                    readKept(dom.name),
                ]).then(function (all) {
                    dom._check = all[0];
                    dom._log = all[1] && all[1].log_lines ? all[1].log_lines[dom.name] || [] : [];
                    dom._kept = all[2];
                    renderVms();
                });
            })));
        }).catch(function (error) {
            replace("host-line", "Could not read the host");
            showError(error.title ? error : { title: String(error) });
        }).then(function () {
            button.disabled = false;
            document.body.setAttribute("data-loaded", "true");
        });
    }

    function measureSettings() {
        return h("div", { class: "rtl-measure-settings pf-v5-c-form pf-m-horizontal" },
                 h("label", { for: "measure-virt-type", text: "Probe with " }),
                 h("select", { id: "measure-virt-type", class: "rtl-input" },
                   h("option", { value: "kvm", text: "KVM" }), h("option", { value: "qemu", text: "TCG (emulated: not real-time figures)" })),
                 h("label", { for: "measure-duration", text: " for " }),
                 h("input", { id: "measure-duration", class: "rtl-input rtl-duration", value: state.duration, size: 5, "aria-label": "Duration" }));
    }

    function start() {
        document.getElementById("refresh").addEventListener("click", refresh);
        document.getElementById("rt-vms").parentNode.insertBefore(measureSettings(), document.getElementById("rt-vms"));
        fetch("config.json").then(function (r) {
            if (!r.ok) throw new Error("config.json: " + r.status);
            return r.json();
        }).then(function (config) {
            state.config = config;
            const permission = cockpit.permission({ admin: true });
            const decided = function () {
                state.admin = permission.allowed !== false;
                const note = document.getElementById("readonly");
                note.hidden = state.admin;
                if (!state.admin) {
                    replace("readonly", alert("info", "Read-only: you are not an administrator of this host",
                                              "Measuring and tuning need administrative access: turn it on in Cockpit's top bar (\"Limited access\"), or log in as an administrator."));
                }
                if (state.status) renderVms();
            };
            permission.addEventListener("changed", decided);
            decided();
            // Is `rtlibvirt noise` there (a newer rtlibvirt)? Else Measure always probes.
            cockpit.spawn([config.rtlibvirt, "noise", "--help"], { err: "ignore" })
                .then(function () { state.noise = true }, function () { state.noise = false });
            return refresh();
        }).catch(function (e) {
            showError({ title: "The page's config.json cannot be read: " + e, hint: "install the page with `rtlibvirt cockpit install`" });
        });
    }

    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
    else start();
}());
