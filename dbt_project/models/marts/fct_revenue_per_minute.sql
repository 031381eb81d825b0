{{ config(materialized='incremental', incremental_strategy='append', tags=['daily', 'live'], pre_hook="{{ delete_partition_range() }}") }}

with

purchases as (
    select * from ({{ activity_purchases_in_eur() }})
    where {{ in_partition_range('event_at') }}
),

final as (
    select
        date_trunc('minute', event_at) as event_minute,
        -- Null, not understated, when a purchase of the minute has no EUR rate.
        case
            when count(revenue_eur) = count(*) then cast(sum(revenue_eur) as decimal(18, 2))
        end as revenue_eur,
        count(*) as orders
    from purchases
    group by 1
)

select
    final.*,
    cast(event_minute as date) as partition_date,
    current_timestamp as built_at
from final
where {{ in_partition_range('event_minute') }}
