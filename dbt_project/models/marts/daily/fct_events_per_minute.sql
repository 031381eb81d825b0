with

events as (
    select * from {{ ref('int_events_unioned') }}
    -- The rolling window reaches 14 minutes back: into the day before, or before the live follower's min time.
    where {{ in_partition_range('event_at', lookback_days=1, lookback_minutes=14) }}
),

events_per_minute as (
    select
        date_trunc('minute', event_at) as event_minute,
        event_type,
        count(*) as event_count
    from events
    group by 1, 2
),

rolling_counts as (
    select
        event_minute,
        event_type,
        event_count,
        -- A range over time, not rows: minutes without events of the type have no row to count.
        cast(sum(event_count) over (
            partition by event_type
            order by event_minute
            range between {{ interval_of(14, 'minutes') }} preceding and current row
        ) as bigint) as rolling_15m_count
    from events_per_minute
),

final as (
    {{ daily_partition_rows('rolling_counts', 'event_minute') }}
)

select * from final
