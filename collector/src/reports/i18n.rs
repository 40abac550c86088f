//! Every text a report shows, in English and Chinese, and the number formats. Chinese is
//! written as a Chinese-speaking customer-success manager would write it, not translated word
//! by word; figures and units stay the same in both.

use serde::{Deserialize, Serialize};

/// Report language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// English.
    En,
    /// Simplified Chinese.
    Zh,
}

impl Lang {
    /// `en` or `zh`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }

    /// The labels of this language.
    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::En => &EN,
            Lang::Zh => &ZH,
        }
    }

    /// Picks the text of this language.
    pub fn pick<'a>(self, en: &'a str, zh: &'a str) -> &'a str {
        match self {
            Lang::En => en,
            Lang::Zh => zh,
        }
    }
}

impl std::str::FromStr for Lang {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "en" => Ok(Lang::En),
            "zh" => Ok(Lang::Zh),
            other => Err(format!("unknown language {other:?}, expected en or zh")),
        }
    }
}

/// Labels and headings.
#[derive(Debug)]
pub struct Texts {
    pub title: &'static str,
    pub region: &'static str,
    pub period: &'static str,
    pub previous_period: &'static str,
    pub generated: &'static str,
    pub time_zone: &'static str,
    pub data_volume: &'static str,
    pub summary: &'static str,
    pub recommendations: &'static str,
    pub heatmap: &'static str,
    pub heatmap_note: &'static str,
    pub all_networks: &'static str,
    pub peak: &'static str,
    pub worst_hours: &'static str,
    pub distributions: &'static str,
    pub first_frame_cdf: &'static str,
    pub stall_durations: &'static str,
    pub this_period: &'static str,
    pub by_network: &'static str,
    pub by_transport: &'static str,
    pub worst_targets: &'static str,
    pub daily: &'static str,
    pub incidents: &'static str,
    pub incidents_none: &'static str,
    pub incidents_not_connected: &'static str,
    pub knowledge: &'static str,
    pub knowledge_none: &'static str,
    pub definitions: &'static str,
    // KPI and column names.
    pub kpi: &'static str,
    pub value: &'static str,
    pub slo: &'static str,
    pub previous: &'static str,
    pub change: &'static str,
    pub status: &'static str,
    pub scope: &'static str,
    pub network_type: &'static str,
    pub transport: &'static str,
    pub target: &'static str,
    pub date: &'static str,
    pub viewing_hours: &'static str,
    pub attempts: &'static str,
    pub first_frame_p50: &'static str,
    pub first_frame_p95: &'static str,
    pub stall_ratio: &'static str,
    pub stalls_per_hour: &'static str,
    pub loss: &'static str,
    pub jitter_p95: &'static str,
    pub probe_success: &'static str,
    pub rtt_p95: &'static str,
    pub stalls: &'static str,
    pub count: &'static str,
    pub share: &'static str,
    // Statuses.
    pub ok: &'static str,
    pub warn: &'static str,
    pub critical: &'static str,
    pub no_slo: &'static str,
    pub no_data: &'static str,
    pub better: &'static str,
    pub worse: &'static str,
    pub unchanged: &'static str,
    pub new_figure: &'static str,
    // Incidents.
    pub level: &'static str,
    pub alert: &'static str,
    pub start: &'static str,
    pub duration: &'static str,
    pub cohorts: &'static str,
    pub resolution: &'static str,
    pub open: &'static str,
    pub whole_fleet: &'static str,
    // Knowledge.
    pub peak_hours: &'static str,
    pub networks_that_matter: &'static str,
    pub carriers: &'static str,
    pub known_issues: &'static str,
    pub what_worked: &'static str,
    pub notes: &'static str,
    pub worked_before: &'static str,
    pub evidence: &'static str,
    pub rows_unreadable: &'static str,
    pub footer: &'static str,
}

/// English.
pub static EN: Texts = Texts {
    title: "Streaming quality report",
    region: "Region",
    period: "Period",
    previous_period: "Compared with",
    generated: "Generated",
    time_zone: "Time zone",
    data_volume: "Data",
    summary: "Headline figures",
    recommendations: "Recommendations",
    heatmap: "Stall ratio by hour of day",
    heatmap_note: "Local time. Each cell is the stall ratio of all viewing in that hour of the \
                   day over the period; the outlined columns are the region's usual peak hours.",
    all_networks: "all networks",
    peak: "peak",
    worst_hours: "Worst hours",
    distributions: "Distributions",
    first_frame_cdf: "First-frame time (share of attempts at or below)",
    stall_durations: "Stall durations",
    this_period: "this period",
    by_network: "By network type",
    by_transport: "By transport",
    worst_targets: "Relays and targets, worst first",
    daily: "Day by day",
    incidents: "Incidents",
    incidents_none: "No incident touched this region in the period.",
    incidents_not_connected: "Incident history is not connected to this collector \
                              (reports.incidents is not set), so incidents are not listed.",
    knowledge: "What we know about this market",
    knowledge_none: "No region knowledge is configured for this region \
                     ([reports.regions.NAME] in the collector configuration); times are in UTC.",
    definitions: "Definitions and method",
    kpi: "Figure",
    value: "Value",
    slo: "SLO",
    previous: "Previous period",
    change: "Change",
    status: "Status",
    scope: "Scope",
    network_type: "Network type",
    transport: "Transport",
    target: "Relay / target",
    date: "Date",
    viewing_hours: "Viewing (h)",
    attempts: "Attempts",
    first_frame_p50: "First frame p50",
    first_frame_p95: "First frame p95",
    stall_ratio: "Stall ratio",
    stalls_per_hour: "Stalls per viewing hour",
    loss: "Packet loss",
    jitter_p95: "Jitter p95",
    probe_success: "Probe success",
    rtt_p95: "RTT p95",
    stalls: "Stalls",
    count: "Count",
    share: "Share",
    ok: "within SLO",
    warn: "warning",
    critical: "critical",
    no_slo: "no SLO set",
    no_data: "no data",
    better: "better",
    worse: "worse",
    unchanged: "unchanged",
    new_figure: "new",
    level: "Level",
    alert: "Alert",
    start: "Start",
    duration: "Duration",
    cohorts: "Affected",
    resolution: "Resolution",
    open: "still open",
    whole_fleet: "whole fleet",
    peak_hours: "Usual peak hours",
    networks_that_matter: "Networks that matter",
    carriers: "Carriers",
    known_issues: "Known issues",
    what_worked: "What worked",
    notes: "Notes",
    worked_before: "Worked before here",
    evidence: "Evidence",
    rows_unreadable: "history rows could not be decoded and were left out",
    footer: "Measured by stallwatch synthetic viewers on edge VMs: they show what a viewer on \
             these networks would have seen, not counts of real viewers.",
};

/// Simplified Chinese.
pub static ZH: Texts = Texts {
    title: "直播质量报告",
    region: "区域",
    period: "统计周期",
    previous_period: "对比周期",
    generated: "生成时间",
    time_zone: "时区",
    data_volume: "数据量",
    summary: "核心指标",
    recommendations: "优化建议",
    heatmap: "各时段卡顿率",
    heatmap_note: "按当地时间统计。每格为统计周期内该时段全部观看的卡顿率；加框的列为该区域的常规高峰时段。",
    all_networks: "全部网络",
    peak: "高峰",
    worst_hours: "卡顿最严重的时段",
    distributions: "分布",
    first_frame_cdf: "首帧时间累积分布（不超过该时长的拨测占比）",
    stall_durations: "单次卡顿时长分布",
    this_period: "本周期",
    by_network: "按网络类型",
    by_transport: "按传输方式",
    worst_targets: "中继节点/目标（由差到好）",
    daily: "每日趋势",
    incidents: "故障事件",
    incidents_none: "本周期内该区域没有发生故障事件。",
    incidents_not_connected: "本采集端尚未接入告警事件记录（未配置 reports.incidents），因此未列出故障事件。",
    knowledge: "市场背景",
    knowledge_none: "该区域尚未配置市场背景信息（采集端配置中的 [reports.regions.NAME]），时间均按 UTC 显示。",
    definitions: "指标定义与测量方法",
    kpi: "指标",
    value: "数值",
    slo: "SLO",
    previous: "上一周期",
    change: "变化",
    status: "状态",
    scope: "范围",
    network_type: "网络类型",
    transport: "传输方式",
    target: "中继/目标",
    date: "日期",
    viewing_hours: "观看时长（小时）",
    attempts: "拨测次数",
    first_frame_p50: "首帧时间 p50",
    first_frame_p95: "首帧时间 p95",
    stall_ratio: "卡顿率",
    stalls_per_hour: "每小时卡顿次数",
    loss: "丢包率",
    jitter_p95: "抖动 p95",
    probe_success: "拨测成功率",
    rtt_p95: "RTT p95",
    stalls: "卡顿",
    count: "次数",
    share: "占比",
    ok: "达标",
    warn: "预警",
    critical: "严重",
    no_slo: "未设 SLO",
    no_data: "无数据",
    better: "改善",
    worse: "变差",
    unchanged: "持平",
    new_figure: "新增",
    level: "级别",
    alert: "告警",
    start: "开始时间",
    duration: "持续时长",
    cohorts: "影响范围",
    resolution: "处理结果",
    open: "尚未恢复",
    whole_fleet: "全网",
    peak_hours: "常规高峰时段",
    networks_that_matter: "重点网络",
    carriers: "重点运营商",
    known_issues: "历史问题",
    what_worked: "有效做法",
    notes: "备注",
    worked_before: "该区域以往的有效做法",
    evidence: "依据",
    rows_unreadable: "条历史数据无法解码，已排除",
    footer: "以上数据来自部署在各地边缘节点上的 stallwatch 拨测播放器：反映的是该网络环境下观众会遇到的体验，并非真实观众人数。",
};

/// A ratio as a percentage: `4.81%`, `0.42%`, `12.5%`.
pub fn pct(ratio: f64) -> String {
    let p = ratio * 100.0;
    if p >= 10.0 { format!("{p:.1}%") } else { format!("{p:.2}%") }
}

/// Milliseconds: `870 ms`, `2.31 s`.
pub fn ms(value: f64) -> String {
    if value >= 1000.0 { format!("{:.2} s", value / 1000.0) } else { format!("{value:.0} ms") }
}

/// A plain number with one decimal (`3.4`), or none for whole numbers above 100.
pub fn num(value: f64) -> String {
    if value >= 100.0 { format!("{value:.0}") } else { format!("{value:.1}") }
}

/// A duration in minutes: `25 min` / `1 h 40 min` (en), `25 分钟` / `1 小时 40 分钟` (zh).
pub fn minutes(lang: Lang, total: u64) -> String {
    let (h, m) = (total / 60, total % 60);
    match (lang, h) {
        (Lang::En, 0) => format!("{m} min"),
        (Lang::En, _) => format!("{h} h {m} min"),
        (Lang::Zh, 0) => format!("{m} 分钟"),
        (Lang::Zh, _) => format!("{h} 小时 {m} 分钟"),
    }
}

/// A network type as people write it: `4G`, `Wi-Fi`, `fiber` / `光纤`.
pub fn network(lang: Lang, network_type: &str) -> String {
    match network_type {
        "wifi" => "Wi-Fi".into(),
        "fiber" => lang.pick("fiber", "光纤").into(),
        n if n.ends_with('g') => n.to_uppercase(),
        n => n.into(),
    }
}

/// `20:00-23:00` style text of the hours set in `mask`, ranges joined by commas.
pub fn hour_ranges(mask: &[bool; 24]) -> String {
    let mut out = Vec::new();
    let mut h = 0;
    while h < 24 {
        if mask[h] {
            let start = h;
            while h < 24 && mask[h] {
                h += 1;
            }
            out.push(format!("{start:02}:00-{h:02}:00"));
        } else {
            h += 1;
        }
    }
    if out.is_empty() { "-".into() } else { out.join(", ") }
}

/// One figure's definition.
#[derive(Debug, Clone, Serialize)]
pub struct Definition {
    /// The figure.
    pub figure: String,
    /// How it is defined and measured.
    pub text: String,
}

/// The definitions section.
pub fn definitions(lang: Lang) -> Vec<Definition> {
    let items: [(&str, &str, &str, &str); 11] = [
        (
            "Viewing time",
            "Play time plus stall time of the synthetic viewers (time before the first frame \
             is in neither). Every ratio and rate below is weighted by it, and a rule only draws \
             a conclusion from a slice with enough of it.",
            "观看时长",
            "拨测播放器的播放时长与卡顿时长之和（首帧出现前的时间不计入）。下列比率均按观看时长加权；\
             观看时长不足的数据切片，不参与规则判断。",
        ),
        (
            "First-frame time",
            "From the start of a viewer attempt (before DNS and the handshake) to the first \
             complete keyframe. p50 and p95 come from the merged HDR histograms of every attempt \
             (3 significant figures). The SLO compares p50 with the 'good' threshold and p95 with \
             the warning and critical thresholds.",
            "首帧时间",
            "从拨测播放器发起连接（DNS 解析和握手之前）到收齐第一个完整关键帧的时间。p50 和 p95 \
             取自所有拨测合并后的 HDR 直方图（3 位有效数字）。SLO 判定时，p50 对照“良好”阈值，\
             p95 对照预警和严重阈值。",
        ),
        (
            "Stall, stall ratio",
            "A virtual player renders the received stream with a 300 ms playout buffer; a gap \
             of more than 500 ms between rendered frames is one stall (the Agora definition). \
             Stall ratio = total stall time / viewing time; stalls per hour = stalls / viewing \
             hours.",
            "卡顿、卡顿率",
            "虚拟播放器以 300 ms 的播放缓冲渲染收到的流，相邻两帧渲染间隔超过 500 ms 记为一次卡顿\
             （与声网的定义一致）。卡顿率 = 卡顿总时长 ÷ 观看时长；每小时卡顿次数 = 卡顿次数 ÷ \
             观看小时数。",
        ),
        (
            "Packet loss",
            "Packets lost / packets expected, by sequence number (RFC 7680, declared lost after \
             a 2 s wait), on the network before any repair. Loss bursts follow RFC 3611 \
             (Gmin 16): 'in bursts' is the share of lost packets inside bursts.",
            "丢包率",
            "按序列号统计的丢失包数 ÷ 应收包数（RFC 7680，等待 2 秒后判定丢失），为重传修复前的网络丢包。\
             突发丢包按 RFC 3611（Gmin 16）识别，“突发占比”指落在突发中的丢包比例。",
        ),
        (
            "Jitter p95",
            "RFC 3550 interarrival jitter from the senders' timestamps, sampled after every \
             packet; the 95th percentile over all samples of the period.",
            "抖动 p95",
            "依据发送端时间戳计算的 RFC 3550 到达间隔抖动，每收到一个包采样一次；取本周期全部样本的第 95 百分位。",
        ),
        (
            "RTT p95",
            "Round-trip time of the viewer's path: QUIC's RTT estimate, or the UDP echo time, \
             sampled once a second.",
            "RTT p95",
            "拨测播放器所在链路的往返时延：QUIC 连接取其 RTT 估计值，UDP 取回显时延，每秒采样一次。",
        ),
        (
            "Probe success",
            "Viewer attempts that did not fail (could not connect, TLS, stream not found, \
             refused) / viewer attempts.",
            "拨测成功率",
            "未失败（连接不上、TLS 错误、找不到流、被拒绝）的拨测次数 ÷ 拨测总次数。",
        ),
        (
            "Previous period",
            "The period of the same length just before this one, computed the same way.",
            "上一周期",
            "紧接本周期之前、时长相同的周期，计算方法相同。",
        ),
        (
            "Hours of the day",
            "Each minute (or hour) of history is placed in the local hour of the region's time \
             zone in which it starts; peak hours are the region's configured usual peaks.",
            "时段",
            "每分钟（或每小时）的历史数据按其起始时刻归入该区域当地时间的对应时段；高峰时段取该区域配置的常规高峰。",
        ),
        (
            "Quantiles",
            "Nearest rank over the exact merged histogram, reported as the top of the value's \
             HDR bucket: at most 0.1 % above the measured value. Never an average of \
             percentiles.",
            "分位数",
            "在精确合并的直方图上按最近秩计算，取所在 HDR 桶的上界，最多比实测值高 0.1%。\
             从不对分位数求平均。",
        ),
        (
            "What is not yet excluded",
            "Windows in which a probe itself ran late (its own overload, not the network's) are \
             still included; excluding them arrives with the viewer model.",
            "尚未剔除的数据",
            "拨测节点自身过载（而非网络原因）导致的异常时间窗口目前仍计入统计，将在播放器模型升级后剔除。",
        ),
    ];
    items
        .iter()
        .map(|(fen, ten, fzh, tzh)| Definition {
            figure: lang.pick(fen, fzh).to_owned(),
            text: lang.pick(ten, tzh).to_owned(),
        })
        .collect()
}
