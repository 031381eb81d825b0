{{ config(materialized='incremental', incremental_strategy='append', tags=['daily', 'live'], pre_hook="{{ delete_partition_range() }}") }}

with

events as (
    select * from {{ ref('int_events_unioned') }}
    where {{ in_partition_range('event_at', lookback_days=1) }}  -- the rolling window reaches into the day before
),

events_per_minute as (
    select
        date_trunc('minute', event_at) as event_minute,
        event_type,
        count(*) as event_count
    from events
    group by 1, 2
),

final as (
    select
        event_minute,
        event_type,
        event_count,
        -- A range over time, not rows: minutes without events of the type have no row to count.
        cast(sum(event_count) over (
            partition by event_type
            order by event_minute
            range between interval 14 minutes preceding and current row
        ) as bigint) as rolling_15m_count
    from events_per_minute
)

select
    final.*,
    cast(event_minute as date) as partition_date,
    current_timestamp as built_at
from final
where {{ in_partition_range('event_minute') }}
