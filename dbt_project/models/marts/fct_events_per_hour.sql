{{ config(materialized='incremental', incremental_strategy='append', tags=['daily'], pre_hook="{{ delete_partition_range() }}") }}

with

events as (
    select * from {{ ref('int_events_unioned') }}
    where {{ in_partition_range('event_at') }}
),

final as (
    select
        date_trunc('hour', event_at) as event_hour,
        event_type,
        count(*) as event_count
    from events
    group by 1, 2
)

select
    final.*,
    cast(event_hour as date) as partition_date,
    current_timestamp as built_at
from final
where {{ in_partition_range('event_hour') }}
