with

item_attributes as (
    select * from {{ ref('stg_lake__item_attributes') }}
),

item_values as (
    -- an item in several imported tables keeps each attribute value once, at its first place
    select
        item_id,
        attribute,
        attribute_value,
        min(value_position) as value_position
    from item_attributes
    group by item_id, attribute, attribute_value
),

tokens as (
    -- one string per value, named by its attribute: brand 12 and category 12 are different
    select
        item_id,
        attribute,
        attribute_value,
        value_position,
        concat(attribute, ':', attribute_value) as attribute_token
    from item_values
),

final as (
    select
        item_id,
        {{ ordered_list('attribute_token', ['value_position', 'attribute', 'attribute_value']) }}
            as attribute_values,
        count(*) as n_attribute_values
    from tokens
    group by item_id
)

select * from final
