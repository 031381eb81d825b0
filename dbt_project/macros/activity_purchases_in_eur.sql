{#-
    One row per purchase event with its revenue converted to EUR at the seed's fixed rate, rounded to
    cents per event (so a day's revenue is the sum of what each order showed, never re-rounded).
    A currency without a rate gives a null `revenue_eur`: unknown, never silently counted as zero.
-#}
{% macro activity_purchases_in_eur() -%}
    select
        purchases.event_id,
        purchases.event_at,
        purchases.user_id,
        purchases.currency,
        cast(round(purchases.revenue * currency_rates.eur_per_unit, 2) as decimal(18, 2)) as revenue_eur
    from {{ ref('stg_purchases') }} as purchases
    left join {{ ref('currency_rates') }} as currency_rates
        on purchases.currency = currency_rates.currency
{%- endmacro %}
